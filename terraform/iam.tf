# Least-privilege roles. The backup role can write new objects but cannot delete any
# version (a compromised backup host cannot erase history); objects a failed run could
# not remove have no manifest and are never restored.

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
    resources = [aws_s3_bucket.backups.arn]
  }
  statement {
    sid = "Objects"
    actions = [
      "s3:PutObject",
      "s3:GetObject",
      "s3:GetObjectVersion",
      "s3:AbortMultipartUpload",
      "s3:ListMultipartUploadParts",
    ]
    resources = ["${aws_s3_bucket.backups.arn}/*"]
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

data "aws_iam_policy_document" "restore" {
  statement {
    actions   = ["s3:ListBucket", "s3:ListBucketVersions", "s3:GetBucketVersioning"]
    resources = [aws_s3_bucket.backups.arn]
  }
  statement {
    actions   = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = ["${aws_s3_bucket.backups.arn}/*"]
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
