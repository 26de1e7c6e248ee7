# Least-privilege roles. The backup role (the writer, also used by `dr rewrap`) adds new
# objects but can never turn a stored version noncurrent, expire or delete it:
#
# - data objects ({prefix}/{cluster}/{backup_id}/snapshot.enc, catalog.enc) are
#   write-once: every PutObject / CompleteMultipartUpload must carry `If-None-Match: *`
#   (condition key s3:if-none-match), so S3 refuses to write over an existing key;
#   CreateMultipartUpload and UploadPart, which create no object and take no condition
#   header, are let through by s3:ObjectCreationOperation = false;
# - manifest.json is the one key it may write again: `dr rewrap` writes a new manifest
#   version by design (docs/manifest.md). That makes only the old manifest noncurrent,
#   never a data object, and the old manifest stays under Object Lock (main.tf);
# - no delete of any version, and no change to versioning, lifecycle, bucket policy,
#   Object Lock or retention (denied here and again in the bucket policy, so a wider
#   policy attached to the role later cannot grant them).
#
# Objects a failed run could not remove have no manifest and are never restored; they
# are removed by retention (`dr prune`, a separate role, after Object Lock ends).

locals {
  bucket_arn = aws_s3_bucket.backups.arn

  # The objects a backup never writes twice. Everything but manifest.json.
  data_object_arns = [
    "${aws_s3_bucket.backups.arn}/*/snapshot.enc",
    "${aws_s3_bucket.backups.arn}/*/catalog.enc",
  ]
  manifest_arns = ["${aws_s3_bucket.backups.arn}/*/manifest.json"]

  # Everything that deletes a version, makes one noncurrent or expire, or loosens what
  # keeps versions (versioning, lifecycle, policy, Object Lock, retention).
  history_actions = [
    "s3:DeleteObject",
    "s3:DeleteObjectVersion",
    "s3:DeleteBucket",
    "s3:PutBucketVersioning",
    "s3:PutLifecycleConfiguration",
    "s3:PutBucketPolicy",
    "s3:DeleteBucketPolicy",
    "s3:PutBucketObjectLockConfiguration",
    "s3:PutObjectRetention",
    "s3:PutObjectLegalHold",
    "s3:BypassGovernanceRetention",
  ]
}

data "aws_iam_policy_document" "assume_backup" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "AWS"
      identifiers = var.backup_principal_arns
    }
  }
}

data "aws_iam_policy_document" "assume_restore" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "AWS"
      identifiers = var.restore_principal_arns
    }
  }
}

data "aws_iam_policy_document" "backup" {
  statement {
    sid       = "Bucket"
    actions   = ["s3:ListBucket", "s3:GetBucketVersioning", "s3:ListBucketMultipartUploads"]
    resources = [local.bucket_arn]
  }
  statement {
    sid = "Read"
    actions = [
      "s3:GetObject",
      "s3:GetObjectVersion",
      "s3:AbortMultipartUpload",
      "s3:ListMultipartUploadParts",
    ]
    resources = ["${local.bucket_arn}/*"]
  }
  # PutObject and CompleteMultipartUpload of any key only with If-None-Match: * .
  statement {
    sid       = "WriteOnce"
    actions   = ["s3:PutObject"]
    resources = ["${local.bucket_arn}/*"]
    condition {
      test     = "Null"
      variable = "s3:if-none-match"
      values   = ["false"]
    }
  }
  # CreateMultipartUpload and UploadPart: no object is created, no condition header taken.
  statement {
    sid       = "MultipartParts"
    actions   = ["s3:PutObject"]
    resources = ["${local.bucket_arn}/*"]
    condition {
      test     = "Bool"
      variable = "s3:ObjectCreationOperation"
      values   = ["false"]
    }
  }
  # `dr rewrap` writes a new version of manifest.json (docs/manifest.md).
  statement {
    sid       = "RewrapManifest"
    actions   = ["s3:PutObject"]
    resources = local.manifest_arns
  }
  statement {
    sid       = "NeverRewriteHistory"
    effect    = "Deny"
    actions   = local.history_actions
    resources = [local.bucket_arn, "${local.bucket_arn}/*"]
  }
  statement {
    sid       = "WrapDataKeys"
    actions   = ["kms:GenerateDataKey", "kms:Encrypt"]
    resources = [aws_kms_key.backup.arn]
    condition {
      test     = "StringEquals"
      variable = "kms:EncryptionContext:vault-dr:cluster"
      values   = [var.cluster]
    }
  }
  statement {
    sid       = "VerifyOwnBackups"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.backup.arn]
    condition {
      test     = "StringEquals"
      variable = "kms:EncryptionContext:vault-dr:cluster"
      values   = [var.cluster]
    }
  }
}

# The bucket's own guard, whatever policies are attached to the backup role: its
# overwrites of data objects and every history action are refused.
data "aws_iam_policy_document" "bucket" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [local.bucket_arn, "${local.bucket_arn}/*"]
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
  # Denied when the request creates an object (PutObject, CopyObject,
  # CompleteMultipartUpload) without If-None-Match.
  statement {
    sid       = "WriterDataObjectsWriteOnce"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = local.data_object_arns
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:PrincipalArn"
      values   = [aws_iam_role.backup.arn]
    }
    condition {
      test     = "Bool"
      variable = "s3:ObjectCreationOperation"
      values   = ["true"]
    }
    condition {
      test     = "Null"
      variable = "s3:if-none-match"
      values   = ["true"]
    }
  }
  statement {
    sid       = "WriterNeverRewritesHistory"
    effect    = "Deny"
    actions   = local.history_actions
    resources = [local.bucket_arn, "${local.bucket_arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:PrincipalArn"
      values   = [aws_iam_role.backup.arn]
    }
  }
}

data "aws_iam_policy_document" "restore" {
  statement {
    actions   = ["s3:ListBucket", "s3:ListBucketVersions", "s3:GetBucketVersioning"]
    resources = [local.bucket_arn]
  }
  statement {
    actions   = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = ["${local.bucket_arn}/*"]
  }
  statement {
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.backup.arn]
    condition {
      test     = "StringEquals"
      variable = "kms:EncryptionContext:vault-dr:cluster"
      values   = [var.cluster]
    }
  }
}

resource "aws_iam_role" "backup" {
  name               = "vault-dr-backup-${var.cluster}"
  assume_role_policy = data.aws_iam_policy_document.assume_backup.json
}

resource "aws_iam_role_policy" "backup" {
  role   = aws_iam_role.backup.id
  policy = data.aws_iam_policy_document.backup.json
}

resource "aws_iam_role" "restore" {
  name               = "vault-dr-restore-${var.cluster}"
  assume_role_policy = data.aws_iam_policy_document.assume_restore.json
}

resource "aws_iam_role_policy" "restore" {
  role   = aws_iam_role.restore.id
  policy = data.aws_iam_policy_document.restore.json
}
