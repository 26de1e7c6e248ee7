# Optional replication of every new version to a second region (replication_enabled,
# the aws.replica provider): a region outage or a lost bucket leaves a copy. The
# replica has its own KMS key, versioning and Object Lock with the same mode and days;
# delete markers are not replicated, and no deletion of a version ever is, so a delete
# in the source never reaches the replica.
#
# The backups' client-side envelope is opened with its recipients, not with the S3
# key: the aws-kms recipient's key lives in the source region, so a restore from the
# replica after losing that region uses another recipient (the offline x25519
# identity, docs/keys.md) or a KMS key of the second region added with dr rewrap.

locals {
  replication         = var.replication_enabled ? 1 : 0
  replica_bucket_name = var.replica_bucket_name != "" ? var.replica_bucket_name : "${var.bucket_name}-replica"
}

data "aws_region" "replica" {
  count    = local.replication
  provider = aws.replica
}

data "aws_iam_policy_document" "replica_kms" {
  #checkov:skip=CKV_AWS_111:A key policy's Resource "*" is this key only; the write actions are key administration for the account root, as in the AWS default key policy.
  #checkov:skip=CKV_AWS_356:A key policy's Resource "*" is this key only (KMS key policies take no other resource).
  #checkov:skip=CKV_AWS_109:The account root administers the key, as in the AWS default key policy; disabling, deleting and policy changes are limited to kms_admins by a Deny.
  count = local.replication
  statement {
    sid       = "AccountAdministersTheKey"
    actions   = local.kms_admin_actions
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = [local.account_root]
    }
  }
  # S3 (replication writing, readers reading) on behalf of IAM-allowed callers, for the
  # replica bucket only; nothing else may use this key.
  statement {
    sid       = "S3UsesTheKeyForTheReplica"
    actions   = ["kms:Encrypt", "kms:GenerateDataKey", "kms:Decrypt"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = [local.account_root]
    }
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${data.aws_region.replica[0].name}.amazonaws.com"]
    }
    condition {
      test     = "StringLike"
      variable = "kms:EncryptionContext:aws:s3:arn"
      values   = [aws_s3_bucket.replica[0].arn, "${aws_s3_bucket.replica[0].arn}/*"]
    }
  }
  statement {
    sid       = "OnlyAdminsDisableDeleteOrRewrite"
    effect    = "Deny"
    actions   = local.kms_destructive_actions
    resources = ["*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "ArnNotEquals"
      variable = "aws:PrincipalArn"
      values   = local.kms_admins
    }
  }
}

resource "aws_kms_key" "replica" {
  count                   = local.replication
  provider                = aws.replica
  description             = "vault-dr replica bucket encryption for cluster ${var.cluster}"
  enable_key_rotation     = true
  deletion_window_in_days = var.kms_deletion_window_days
  policy                  = data.aws_iam_policy_document.replica_kms[0].json
  tags                    = var.tags
}

resource "aws_kms_alias" "replica" {
  count         = local.replication
  provider      = aws.replica
  name          = "alias/vault-backup-replica-${var.cluster}"
  target_key_id = aws_kms_key.replica[0].key_id
}

resource "aws_s3_bucket" "replica" {
  #checkov:skip=CKV_AWS_18:Server access logs need a second bucket this module does not own; audit with CloudTrail S3 data events (terraform/README.md).
  #checkov:skip=CKV2_AWS_62:Nothing consumes S3 event notifications on the replica; it is read only in a disaster.
  #checkov:skip=CKV_AWS_144:This is the replication destination; replicating the replica again would be a third copy this module does not make.
  count               = local.replication
  provider            = aws.replica
  bucket              = local.replica_bucket_name
  object_lock_enabled = true
  tags                = var.tags
}

resource "aws_s3_bucket_ownership_controls" "replica" {
  count    = local.replication
  provider = aws.replica
  bucket   = aws_s3_bucket.replica[0].id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_versioning" "replica" {
  count    = local.replication
  provider = aws.replica
  bucket   = aws_s3_bucket.replica[0].id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_object_lock_configuration" "replica" {
  count    = local.replication
  provider = aws.replica
  bucket   = aws_s3_bucket.replica[0].id
  rule {
    default_retention {
      mode = var.object_lock_mode
      days = var.object_lock_days
    }
  }
  depends_on = [aws_s3_bucket_versioning.replica]
}

resource "aws_s3_bucket_public_access_block" "replica" {
  count                   = local.replication
  provider                = aws.replica
  bucket                  = aws_s3_bucket.replica[0].id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_server_side_encryption_configuration" "replica" {
  count    = local.replication
  provider = aws.replica
  bucket   = aws_s3_bucket.replica[0].id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.replica[0].arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "replica" {
  count    = local.replication
  provider = aws.replica
  bucket   = aws_s3_bucket.replica[0].id
  rule {
    id     = "expire-noncurrent"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_days
    }
  }
  rule {
    id     = "abort-incomplete-uploads"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = var.abort_incomplete_multipart_days
    }
  }
  depends_on = [aws_s3_bucket_versioning.replica]
}

data "aws_iam_policy_document" "replica_bucket" {
  count = local.replication
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.replica[0].arn, "${aws_s3_bucket.replica[0].arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
  # The replica is written by replication (s3:ReplicateObject) only: no role of this
  # module writes, deletes or loosens it.
  statement {
    sid       = "NoRoleWritesDeletesOrLoosens"
    effect    = "Deny"
    actions   = concat(["s3:PutObject"], local.history_actions)
    resources = [aws_s3_bucket.replica[0].arn, "${aws_s3_bucket.replica[0].arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:PrincipalArn"
      values   = local.all_role_arns
    }
  }
}

resource "aws_s3_bucket_policy" "replica" {
  count      = local.replication
  provider   = aws.replica
  bucket     = aws_s3_bucket.replica[0].id
  policy     = data.aws_iam_policy_document.replica_bucket[0].json
  depends_on = [aws_s3_bucket_public_access_block.replica]
}

data "aws_iam_policy_document" "assume_replication" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["s3.amazonaws.com"]
    }
    # S3 on behalf of this account's buckets only (the confused-deputy guard).
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

data "aws_iam_policy_document" "replication" {
  count = local.replication
  statement {
    sid       = "SourceBucket"
    actions   = ["s3:GetReplicationConfiguration", "s3:ListBucket"]
    resources = [aws_s3_bucket.backups.arn]
  }
  statement {
    sid = "SourceVersions"
    actions = [
      "s3:GetObjectVersionForReplication",
      "s3:GetObjectVersionAcl",
      "s3:GetObjectVersionTagging",
      "s3:GetObjectRetention",
      "s3:GetObjectLegalHold",
    ]
    resources = ["${aws_s3_bucket.backups.arn}/*"]
  }
  # No s3:ReplicateDelete: a delete in the source never reaches the replica.
  statement {
    sid       = "ReplicaWrites"
    actions   = ["s3:ReplicateObject", "s3:ReplicateTags"]
    resources = ["${aws_s3_bucket.replica[0].arn}/*"]
  }
  statement {
    sid       = "DecryptSource"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.backup.arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [local.s3_via]
    }
  }
  statement {
    sid       = "EncryptReplica"
    actions   = ["kms:Encrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.replica[0].arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${data.aws_region.replica[0].name}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "replication" {
  count              = local.replication
  name               = "vault-dr-replication-${var.cluster}"
  assume_role_policy = data.aws_iam_policy_document.assume_replication.json
  tags               = var.tags
}

resource "aws_iam_role_policy" "replication" {
  count  = local.replication
  role   = aws_iam_role.replication[0].id
  policy = data.aws_iam_policy_document.replication[0].json
}

resource "aws_s3_bucket_replication_configuration" "backups" {
  count  = local.replication
  role   = aws_iam_role.replication[0].arn
  bucket = aws_s3_bucket.backups.id

  rule {
    id     = "replicate-every-version"
    status = "Enabled"
    filter {}
    delete_marker_replication {
      status = "Disabled"
    }
    source_selection_criteria {
      sse_kms_encrypted_objects {
        status = "Enabled"
      }
    }
    destination {
      bucket = aws_s3_bucket.replica[0].arn
      encryption_configuration {
        replica_kms_key_id = aws_kms_key.replica[0].arn
      }
    }
  }

  depends_on = [aws_s3_bucket_versioning.backups, aws_s3_bucket_versioning.replica]
}
