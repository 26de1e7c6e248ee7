# Storage and keys for vault-dr. Credentials for these roles must NOT come from the Vault
# being backed up: use instance/task roles or another identity provider.

resource "aws_s3_bucket" "backups" {
  bucket              = var.bucket_name
  object_lock_enabled = var.object_lock_days > 0
}

# dr backup refuses a bucket whose versioning is not Enabled.
resource "aws_s3_bucket_versioning" "backups" {
  bucket = aws_s3_bucket.backups.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_object_lock_configuration" "backups" {
  count  = var.object_lock_days > 0 ? 1 : 0
  bucket = aws_s3_bucket.backups.id
  rule {
    default_retention {
      mode = "GOVERNANCE"
      days = var.object_lock_days
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
}

resource "aws_kms_key" "backup" {
  description             = "vault-dr data key wrapping for cluster ${var.cluster}"
  enable_key_rotation     = true
  deletion_window_in_days = 30
}

resource "aws_kms_alias" "backup" {
  name          = "alias/vault-backup-${var.cluster}"
  target_key_id = aws_kms_key.backup.key_id
}
