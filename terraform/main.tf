# Storage for vault-dr: one versioned, Object-Locked bucket per cluster. Credentials for
# the roles (iam.tf) must NOT come from the Vault being backed up: use instance/task
# roles, IRSA or GitHub's OIDC provider.
#
# A stored version can never be made noncurrent, expired or deleted by the backup
# writer: Object Lock holds every version for object_lock_days, the writer's overwrites
# of data objects are refused (write-once keys, `If-None-Match: *`, iam.tf and the
# bucket policy) and no role of this module can change the lifecycle, the lock or the
# bucket policy.

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

resource "aws_s3_bucket" "backups" {
  #checkov:skip=CKV_AWS_18:Server access logs need a second bucket this module does not own; audit with CloudTrail S3 data events (terraform/README.md).
  #checkov:skip=CKV2_AWS_62:Nothing consumes S3 event notifications; dr status, the metrics and the drill report are the monitoring.
  #checkov:skip=CKV_AWS_144:Cross-region replication is a variable (replication_enabled, replication.tf), off by default: it needs a second region and doubles the cost.
  bucket = var.bucket_name
  # Object Lock is turned on at creation; it can never be turned off again.
  object_lock_enabled = true
  tags                = var.tags
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

# Every new version is locked for object_lock_days from its creation. A version made
# noncurrent (an old manifest.json after `dr rewrap`, an old lock.json) is therefore kept
# at least that long, which the precondition keeps >= the noncurrent-version expiry.
resource "aws_s3_bucket_object_lock_configuration" "backups" {
  bucket = aws_s3_bucket.backups.id
  rule {
    default_retention {
      mode = var.object_lock_mode
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

# Defence in depth only: vault-dr encrypts client-side before upload. The bucket key
# makes S3 ask KMS once per bucket key rather than once per object (cost, throttling);
# the key policy (kms.tf) lets S3 use the key for this bucket only.
resource "aws_s3_bucket_server_side_encryption_configuration" "backups" {
  bucket = aws_s3_bucket.backups.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.backup.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "backups" {
  bucket = aws_s3_bucket.backups.id
  # Noncurrent versions: old manifests (rewrap), lock and state rewrites, and whatever
  # a writer replaced. Current versions are never expired here: removing backups is
  # dr prune's job (docs/retention.md), which keeps the newest verified one.
  rule {
    id     = "expire-noncurrent"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_days
    }
  }
  # A killed backup leaves an unfinished multipart upload: invisible, but billed.
  rule {
    id     = "abort-incomplete-uploads"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = var.abort_incomplete_multipart_days
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
