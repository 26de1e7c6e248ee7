# The KMS key that wraps vault-dr's data keys (the `aws-kms` recipient) and that S3 uses
# for the bucket's default encryption.
#
# Who may do what with it is said HERE, not left to IAM: the account root (that is, IAM
# principals the account allows) administers the key and lets S3 use it for this
# bucket, but no IAM policy in the account can grant the key's direct cryptographic use.
# Only the roles named below may wrap (backup-writer) or unwrap (drill-reader, the GitHub
# drill role) data keys, and only with vault-dr's EncryptionContext for this cluster
# (dr/crypto/awskms.py sends {"vault-dr:cluster": <cluster>, "vault-dr:backup-id": <id>}).
# A wrapped key therefore cannot be opened outside vault-dr's context, and CloudTrail
# names the backup of every Decrypt.

locals {
  account_root = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"

  # Who may disable the key, schedule its deletion, rewrite its policy or grant its use:
  # the account root, the identity that runs terraform (so that it can manage the key
  # next time) and kms_admin_arns. Denied to everyone else below, whatever IAM allows.
  kms_admins = distinct(concat(
    [local.account_root, data.aws_iam_session_context.current.issuer_arn],
    var.kms_admin_arns,
  ))

  kms_admin_actions = [
    "kms:Create*",
    "kms:Describe*",
    "kms:Enable*",
    "kms:List*",
    "kms:Put*",
    "kms:Update*",
    "kms:Revoke*",
    "kms:Disable*",
    "kms:Get*",
    "kms:Delete*",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:ScheduleKeyDeletion",
    "kms:CancelKeyDeletion",
    "kms:RotateKeyOnDemand",
  ]

  # What only a key administrator may do: each ends or widens what the key protects.
  kms_destructive_actions = [
    "kms:DisableKey",
    "kms:ScheduleKeyDeletion",
    "kms:DisableKeyRotation",
    "kms:PutKeyPolicy",
    "kms:CreateGrant",
    "kms:UpdateAlias",
    "kms:DeleteAlias",
  ]

  kms_crypto_actions = [
    "kms:Encrypt",
    "kms:Decrypt",
    "kms:ReEncrypt*",
    "kms:GenerateDataKey*",
  ]

  # Roles that unwrap data keys: the drill-reader and, when configured, the GitHub role.
  drill_role_arns = concat([aws_iam_role.drill_reader.arn], aws_iam_role.github_drill[*].arn)
}

# The issuer of the terraform session: for an assumed role its role ARN, which is what
# aws:PrincipalArn holds (the caller identity's ARN would be the STS session's).
data "aws_iam_session_context" "current" {
  arn = data.aws_caller_identity.current.arn
}

data "aws_iam_policy_document" "kms" {
  #checkov:skip=CKV_AWS_111:A key policy's Resource "*" is this key only; the write actions are key administration for the account root, as in the AWS default key policy.
  #checkov:skip=CKV_AWS_356:A key policy's Resource "*" is this key only (KMS key policies take no other resource).
  #checkov:skip=CKV_AWS_109:The account root administers the key, as in the AWS default key policy; without it the key becomes unmanageable. Disabling, deleting and policy changes are limited to kms_admins by a Deny.
  statement {
    sid       = "AccountAdministersTheKey"
    actions   = local.kms_admin_actions
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = [local.account_root]
    }
  }
  # SSE-KMS: S3 generates and decrypts object keys on behalf of a caller that IAM lets
  # read or write the bucket (the roles, replication), for this bucket only.
  statement {
    sid       = "S3UsesTheKeyForThisBucket"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = [local.account_root]
    }
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${data.aws_region.current.name}.amazonaws.com"]
    }
    condition {
      test     = "StringLike"
      variable = "kms:EncryptionContext:aws:s3:arn"
      values   = [aws_s3_bucket.backups.arn, "${aws_s3_bucket.backups.arn}/*"]
    }
  }
  # dr backup: GenerateDataKey (KMS the first recipient) or Encrypt (a key made by
  # another recipient; dr rewrap --add), each with exactly vault-dr's context.
  statement {
    sid       = "BackupWriterWrapsDataKeys"
    actions   = ["kms:GenerateDataKey", "kms:Encrypt"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = [aws_iam_role.backup.arn]
    }
    condition {
      test     = "StringEquals"
      variable = "kms:EncryptionContext:vault-dr:cluster"
      values   = [var.cluster]
    }
    condition {
      test     = "Null"
      variable = "kms:EncryptionContext:vault-dr:backup-id"
      values   = ["false"]
    }
    condition {
      test     = "ForAllValues:StringEquals"
      variable = "kms:EncryptionContextKeys"
      values   = ["vault-dr:cluster", "vault-dr:backup-id"]
    }
  }
  # dr drill, verify, restore, status: Decrypt of a stanza, with the same context.
  statement {
    sid       = "DrillReadersUnwrapDataKeys"
    actions   = ["kms:Decrypt"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = local.drill_role_arns
    }
    condition {
      test     = "StringEquals"
      variable = "kms:EncryptionContext:vault-dr:cluster"
      values   = [var.cluster]
    }
    condition {
      test     = "Null"
      variable = "kms:EncryptionContext:vault-dr:backup-id"
      values   = ["false"]
    }
    condition {
      test     = "ForAllValues:StringEquals"
      variable = "kms:EncryptionContextKeys"
      values   = ["vault-dr:cluster", "vault-dr:backup-id"]
    }
  }
  # Whatever a grant or a later statement allows: cryptographic use is vault-dr's (its
  # cluster context) or S3's for this bucket, nothing else.
  statement {
    sid       = "NoCryptoOutsideVaultDrOrS3"
    effect    = "Deny"
    actions   = local.kms_crypto_actions
    resources = ["*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "StringNotEquals"
      variable = "kms:EncryptionContext:vault-dr:cluster"
      values   = [var.cluster]
    }
    condition {
      test     = "StringNotEquals"
      variable = "kms:ViaService"
      values   = ["s3.${data.aws_region.current.name}.amazonaws.com"]
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

resource "aws_kms_key" "backup" {
  description             = "vault-dr data key wrapping and bucket encryption for cluster ${var.cluster}"
  enable_key_rotation     = true
  deletion_window_in_days = var.kms_deletion_window_days
  policy                  = data.aws_iam_policy_document.kms.json
  tags                    = var.tags
}

resource "aws_kms_alias" "backup" {
  name          = "alias/vault-backup-${var.cluster}"
  target_key_id = aws_kms_key.backup.key_id
}
