# Storage and keys for vault-dr. Credentials for these roles must NOT come from the Vault
# being backed up: use instance/task roles or another identity provider.
#
# A stored version can never be made noncurrent, expired or deleted by the backup
# writer: Object Lock (COMPLIANCE) holds every version for object_lock_days, the writer's
# overwrites of data objects are refused (write-once keys, `If-None-Match: *`, iam.tf and
# the bucket policy below) and only the bucket owner can change the lifecycle rule.

data "aws_caller_identity" "current" {}

resource "aws_s3_bucket" "backups" {
  #checkov:skip=CKV_AWS_18:Server access logs need a second bucket this module does not own; audit with CloudTrail S3 data events (terraform/README.md).
  #checkov:skip=CKV_AWS_144:The replica region/account is deployment-specific; add replication of this bucket outside this module (terraform/README.md).
  #checkov:skip=CKV2_AWS_62:Nothing consumes S3 event notifications; dr list, dr verify and the drill report are the monitoring.
  bucket = var.bucket_name
  # Object Lock can only be turned on when the bucket is created, and never off again.
  object_lock_enabled = true
}

# No ACLs: the bucket owner owns every object, access is by policy only.
resource "aws_s3_bucket_ownership_controls" "backups" {
  bucket = aws_s3_bucket.backups.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

# dr backup refuses a bucket whose versioning is not Enabled (Object Lock requires it too).
resource "aws_s3_bucket_versioning" "backups" {
  bucket = aws_s3_bucket.backups.id
  versioning_configuration {
    status = "Enabled"
  }
}

# COMPLIANCE: no principal, the account root included, can delete a version or shorten
# its retention before it ends. A version made noncurrent (an old manifest.json after
# `dr rewrap`) is therefore kept at least object_lock_days from its creation, which the
# precondition keeps >= the noncurrent-version expiry below.
resource "aws_s3_bucket_object_lock_configuration" "backups" {
  bucket = aws_s3_bucket.backups.id
  rule {
    default_retention {
      mode = "COMPLIANCE"
      days = var.object_lock_days
    }
  }
  depends_on = [aws_s3_bucket_versioning.backups]

  lifecycle {
    precondition {
      condition     = var.object_lock_days >= var.noncurrent_version_days
      error_message = "object_lock_days must be >= noncurrent_version_days: a noncurrent version must not expire before its Object Lock retention ends."
    }
  }
}

resource "aws_s3_bucket_public_access_block" "backups" {
  bucket                  = aws_s3_bucket.backups.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

# Defence in depth only: vault-dr encrypts client-side before upload.
resource "aws_s3_bucket_server_side_encryption_configuration" "backups" {
  bucket = aws_s3_bucket.backups.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "aws:kms"
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "backups" {
  bucket = aws_s3_bucket.backups.id
  rule {
    id     = "expire-noncurrent"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_days
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 2
    }
  }
  depends_on = [aws_s3_bucket_versioning.backups]

  lifecycle {
    precondition {
      condition     = var.object_lock_days >= var.noncurrent_version_days
      error_message = "noncurrent_version_days must be <= object_lock_days: a noncurrent version must not expire before its Object Lock retention ends."
    }
  }
}

resource "aws_s3_bucket_policy" "backups" {
  bucket = aws_s3_bucket.backups.id
  policy = data.aws_iam_policy_document.bucket.json
  # The public access block first: a policy with a Principal "*" Deny is not public, but
  # S3 evaluates the block when the policy is put.
  depends_on = [aws_s3_bucket_public_access_block.backups]
}

# Same as the default key policy (the account delegates key access to IAM, where the
# roles in iam.tf get exactly what they need), written out so that it is reviewed here.
data "aws_iam_policy_document" "kms" {
  #checkov:skip=CKV_AWS_111:A key policy's Resource "*" is this key only; kms:* for the account root is the AWS default key policy, which hands key access to IAM.
  #checkov:skip=CKV_AWS_356:A key policy's Resource "*" is this key only (KMS key policies take no other resource).
  #checkov:skip=CKV_AWS_109:The account root administers the key, as in the AWS default key policy; without it the key becomes unmanageable.
  statement {
    sid       = "AccountAdministersKeyThroughIAM"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:aws:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }
}

resource "aws_kms_key" "backup" {
  description             = "vault-dr data key wrapping for cluster ${var.cluster}"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms.json
}

resource "aws_kms_alias" "backup" {
  name          = "alias/vault-backup-${var.cluster}"
  target_key_id = aws_kms_key.backup.key_id
}
