# Least-privilege roles, one per job (terraform/README.md has the table):
#
# backup-writer (dr backup; dr rewrap with --identity) adds new objects but can never
# turn a stored version noncurrent, expire or delete it:
# - data objects ({prefix}/{cluster}/{backup_id}/snapshot.enc, catalog.enc) are
#   write-once: every PutObject / CompleteMultipartUpload must carry `If-None-Match: *`
#   (condition key s3:if-none-match), so S3 refuses to write over an existing key;
#   CreateMultipartUpload and UploadPart, which create no object and take no condition
#   header, are let through by s3:ObjectCreationOperation = false;
# - manifest.json is the one backup key it may write again: `dr rewrap` writes a new
#   manifest version by design (docs/manifest.md). That makes only the old manifest
#   noncurrent, never a data object, and the old manifest stays under Object Lock;
# - lock.json, the per-cluster run lock (docs/locking.md), is overwritten only with
#   `If-Match: <etag>` (condition key s3:if-match), so a run can renew or release its
#   own lock and take over an expired one, never blindly replace another run's;
# - state/*.json, the previous result the alerts compare with (docs/alerts.md), is
#   rewritten by every run; nothing restores from it;
# - no delete of any version, and no change to versioning, lifecycle, bucket policy,
#   Object Lock or retention (denied here and again in the bucket policy, so a wider
#   policy attached to the role later cannot grant them);
# - KMS: wraps data keys (GenerateDataKey, Encrypt), never Decrypt: a leaked backup
#   credential cannot open a backup. `dr rewrap` unwraps with the offline identity
#   (--identity), and `dr verify` runs with the drill-reader role.
#
# pruner (dr prune, docs/retention.md) deletes versions and aborts uploads, respects
# Object Lock (no bypass, no retention change) and never writes a backup object.
#
# drill-reader (dr drill, verify, restore, status) reads and unwraps, writes only its
# records ({prefix}/{cluster}/records/..., docs/status.md) and its alert state.
#
# Listing (s3:ListBucket*) is not confined to key_prefix: it shows key names (backup
# ids, record names), no content, and vault-dr lists below the prefix only.

locals {
  bucket_arn = aws_s3_bucket.backups.arn
  # Everything vault-dr keeps for this cluster, and nothing else the bucket may hold.
  objects_arn = "${aws_s3_bucket.backups.arn}/${var.key_prefix}*"

  # The objects a backup never writes twice. Everything but manifest.json.
  data_object_arns = [
    "${aws_s3_bucket.backups.arn}/${var.key_prefix}*/snapshot.enc",
    "${aws_s3_bucket.backups.arn}/${var.key_prefix}*/catalog.enc",
  ]
  manifest_arns = ["${aws_s3_bucket.backups.arn}/${var.key_prefix}*/manifest.json"]
  # The per-cluster run lock ({prefix}/{cluster}/lock.json, docs/locking.md).
  lock_arns = ["${aws_s3_bucket.backups.arn}/${var.key_prefix}*/lock.json"]
  # The previous result of each command, for alerts ({prefix}/{cluster}/state/{command}.json).
  state_arns = ["${aws_s3_bucket.backups.arn}/${var.key_prefix}*/state/*.json"]
  # Drill and verify records ({prefix}/{cluster}/records/{backup_id}/...).
  record_arns = ["${aws_s3_bucket.backups.arn}/${var.key_prefix}*/records/*"]

  # What loosens what keeps versions (versioning, lifecycle, policy, Object Lock,
  # retention, replication) or removes the bucket. No role of this module may.
  protection_actions = [
    "s3:DeleteBucket",
    "s3:PutBucketVersioning",
    "s3:PutLifecycleConfiguration",
    "s3:PutBucketPolicy",
    "s3:DeleteBucketPolicy",
    "s3:PutBucketObjectLockConfiguration",
    "s3:PutObjectRetention",
    "s3:PutObjectLegalHold",
    "s3:BypassGovernanceRetention",
    "s3:PutReplicationConfiguration",
    "s3:PutEncryptionConfiguration",
  ]
  # ... and, for the writer, every delete too: a leaked backup key cannot erase history.
  history_actions = concat(["s3:DeleteObject", "s3:DeleteObjectVersion"], local.protection_actions)

  s3_via = "s3.${data.aws_region.current.name}.amazonaws.com"

  # The roles that only read backups (drills from a host, and from GitHub Actions).
  reader_role_arns = concat([aws_iam_role.drill_reader.arn], aws_iam_role.github_drill[*].arn)
  all_role_arns = concat(
    [aws_iam_role.backup.arn, aws_iam_role.pruner.arn],
    local.reader_role_arns,
    aws_iam_role.replication[*].arn,
  )

  github_enabled = var.github_repository != ""
  # One repository, one branch or one environment: StringEquals, never a wildcard.
  github_subject           = var.github_environment != "" ? "repo:${var.github_repository}:environment:${var.github_environment}" : "repo:${var.github_repository}:ref:refs/heads/${var.github_branch}"
  github_oidc_provider_arn = var.github_oidc_provider_arn != "" ? var.github_oidc_provider_arn : one(aws_iam_openid_connect_provider.github[*].arn)
}

# -- trust policies -------------------------------------------------------------------

data "aws_iam_policy_document" "assume_backup" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "AWS"
      identifiers = var.backup_principal_arns
    }
  }
}

data "aws_iam_policy_document" "assume_pruner" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "AWS"
      identifiers = var.pruner_principal_arns
    }
  }
}

data "aws_iam_policy_document" "assume_drill_reader" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "AWS"
      identifiers = var.drill_principal_arns
    }
  }
}

# GitHub Actions' OIDC token: the drill workflow of ONE repository on ONE branch (or
# environment), for this account (aud sts.amazonaws.com, what
# aws-actions/configure-aws-credentials asks for).
data "aws_iam_policy_document" "assume_github" {
  count = local.github_enabled ? 1 : 0
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [local.github_oidc_provider_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "token.actions.githubusercontent.com:aud"
      values   = ["sts.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "token.actions.githubusercontent.com:sub"
      values   = [local.github_subject]
    }
  }
}

resource "aws_iam_openid_connect_provider" "github" {
  count          = local.github_enabled && var.github_oidc_provider_arn == "" ? 1 : 0
  url            = "https://token.actions.githubusercontent.com"
  client_id_list = ["sts.amazonaws.com"]
  # AWS no longer checks these for GitHub (it trusts the issuer's CA), but provider
  # versions before 5.81 require the argument: GitHub's published thumbprints.
  thumbprint_list = [
    "6938fd4d98bab03faadb97b34396831e3780aea1",
    "1c58a3a8518e8759bf075b76b750d4f2df264fcd",
  ]
  tags = var.tags
}

# -- backup-writer --------------------------------------------------------------------

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
    resources = [local.objects_arn]
  }
  # PutObject and CompleteMultipartUpload of any key only with If-None-Match: * .
  statement {
    sid       = "WriteOnce"
    actions   = ["s3:PutObject"]
    resources = [local.objects_arn]
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
    resources = [local.objects_arn]
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
  # The run lock is renewed, released and taken over by overwriting lock.json, always
  # with If-Match on the ETag read (compare-and-swap); creating it uses WriteOnce above.
  # Each write leaves a small noncurrent version for the lifecycle rule (main.tf).
  statement {
    sid       = "RunLockCompareAndSwap"
    actions   = ["s3:PutObject"]
    resources = local.lock_arns
    condition {
      test     = "Null"
      variable = "s3:if-match"
      values   = ["false"]
    }
  }
  # The alerts' previous result (docs/alerts.md), rewritten by every run.
  statement {
    sid       = "AlertState"
    actions   = ["s3:PutObject"]
    resources = local.state_arns
  }
  statement {
    sid       = "NeverRewriteHistory"
    effect    = "Deny"
    actions   = local.history_actions
    resources = [local.bucket_arn, "${local.bucket_arn}/*"]
  }
  # The same grant as in the key policy (kms.tf), where it is what counts: the account
  # delegates no direct use of the key to IAM.
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
  # SSE-KMS of what it writes and reads (the key policy delegates this use to IAM).
  statement {
    sid       = "BucketEncryption"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [aws_kms_key.backup.arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [local.s3_via]
    }
  }
}

resource "aws_iam_role" "backup" {
  name               = "vault-dr-backup-writer-${var.cluster}"
  assume_role_policy = data.aws_iam_policy_document.assume_backup.json
  tags               = var.tags
}

resource "aws_iam_role_policy" "backup" {
  role   = aws_iam_role.backup.id
  policy = data.aws_iam_policy_document.backup.json
}

# -- pruner ---------------------------------------------------------------------------

data "aws_iam_policy_document" "pruner" {
  statement {
    sid = "Bucket"
    actions = [
      "s3:ListBucket",
      "s3:ListBucketVersions",
      "s3:ListBucketMultipartUploads",
      "s3:GetBucketVersioning",
      "s3:GetBucketObjectLockConfiguration",
    ]
    resources = [local.bucket_arn]
  }
  # Without GetObjectRetention/LegalHold S3 leaves the lock fields out of HEAD, and a
  # locked version would look unlocked (docs/retention.md).
  statement {
    sid = "ReadWithLockState"
    actions = [
      "s3:GetObject",
      "s3:GetObjectVersion",
      "s3:GetObjectRetention",
      "s3:GetObjectLegalHold",
      "s3:ListMultipartUploadParts",
    ]
    resources = [local.objects_arn]
  }
  # Permanent deletes (with a VersionId) once Object Lock lets them, and debris.
  statement {
    sid       = "DeleteVersionsAndDebris"
    actions   = ["s3:DeleteObject", "s3:DeleteObjectVersion", "s3:AbortMultipartUpload"]
    resources = [local.objects_arn]
  }
  # The run lock, as for the writer: created with If-None-Match, replaced with If-Match.
  statement {
    sid       = "RunLockCreate"
    actions   = ["s3:PutObject"]
    resources = local.lock_arns
    condition {
      test     = "Null"
      variable = "s3:if-none-match"
      values   = ["false"]
    }
  }
  statement {
    sid       = "RunLockCompareAndSwap"
    actions   = ["s3:PutObject"]
    resources = local.lock_arns
    condition {
      test     = "Null"
      variable = "s3:if-match"
      values   = ["false"]
    }
  }
  statement {
    sid       = "AlertState"
    actions   = ["s3:PutObject"]
    resources = local.state_arns
  }
  statement {
    sid       = "NeverWritesBackups"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = concat(local.data_object_arns, local.manifest_arns)
  }
  # Object Lock is respected, not worked around.
  statement {
    sid       = "NeverLoosensProtection"
    effect    = "Deny"
    actions   = local.protection_actions
    resources = [local.bucket_arn, "${local.bucket_arn}/*"]
  }
  statement {
    sid       = "BucketEncryption"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [aws_kms_key.backup.arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [local.s3_via]
    }
  }
}

resource "aws_iam_role" "pruner" {
  name               = "vault-dr-pruner-${var.cluster}"
  assume_role_policy = data.aws_iam_policy_document.assume_pruner.json
  tags               = var.tags
}

resource "aws_iam_role_policy" "pruner" {
  role   = aws_iam_role.pruner.id
  policy = data.aws_iam_policy_document.pruner.json
}

# -- drill-reader (and the GitHub drill role) -----------------------------------------

data "aws_iam_policy_document" "drill_reader" {
  statement {
    sid = "Bucket"
    actions = [
      "s3:ListBucket",
      "s3:ListBucketVersions",
      "s3:ListBucketMultipartUploads",
      "s3:GetBucketVersioning",
    ]
    resources = [local.bucket_arn]
  }
  statement {
    sid       = "Read"
    actions   = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = [local.objects_arn]
  }
  # A drill or verify leaves a record (docs/status.md) and its alert state; nothing else.
  statement {
    sid       = "RecordsAndState"
    actions   = ["s3:PutObject"]
    resources = concat(local.record_arns, local.state_arns)
  }
  statement {
    sid       = "NeverWritesBackupsOrLocks"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = concat(local.data_object_arns, local.manifest_arns, local.lock_arns)
  }
  statement {
    sid       = "NeverDeletesOrLoosens"
    effect    = "Deny"
    actions   = local.history_actions
    resources = [local.bucket_arn, "${local.bucket_arn}/*"]
  }
  statement {
    sid       = "UnwrapDataKeys"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.backup.arn]
    condition {
      test     = "StringEquals"
      variable = "kms:EncryptionContext:vault-dr:cluster"
      values   = [var.cluster]
    }
  }
  statement {
    sid       = "BucketEncryption"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [aws_kms_key.backup.arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [local.s3_via]
    }
  }
}

resource "aws_iam_role" "drill_reader" {
  name               = "vault-dr-drill-reader-${var.cluster}"
  assume_role_policy = data.aws_iam_policy_document.assume_drill_reader.json
  tags               = var.tags
}

resource "aws_iam_role_policy" "drill_reader" {
  role   = aws_iam_role.drill_reader.id
  policy = data.aws_iam_policy_document.drill_reader.json
}

resource "aws_iam_role" "github_drill" {
  count                = local.github_enabled ? 1 : 0
  name                 = "vault-dr-github-drill-${var.cluster}"
  assume_role_policy   = data.aws_iam_policy_document.assume_github[0].json
  max_session_duration = 3600
  tags                 = var.tags
}

resource "aws_iam_role_policy" "github_drill" {
  count  = local.github_enabled ? 1 : 0
  role   = aws_iam_role.github_drill[0].id
  policy = data.aws_iam_policy_document.drill_reader.json
}

# The drill workflow (.github/workflows/dr-drill.yml, input unseal-keys-secret) reads the
# SOURCE cluster's unseal keys from Secrets Manager with the same OIDC role: the named
# secrets only, read only. No secret named: no statement.
data "aws_iam_policy_document" "github_unseal_keys" {
  count = local.github_enabled && length(var.unseal_keys_secret_arns) > 0 ? 1 : 0
  statement {
    sid       = "ReadUnsealKeys"
    actions   = ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]
    resources = var.unseal_keys_secret_arns
  }
}

resource "aws_iam_role_policy" "github_unseal_keys" {
  count  = local.github_enabled && length(var.unseal_keys_secret_arns) > 0 ? 1 : 0
  name   = "unseal-keys"
  role   = aws_iam_role.github_drill[0].id
  policy = data.aws_iam_policy_document.github_unseal_keys[0].json
}

# -- the bucket's own guard -----------------------------------------------------------

# Whatever policies are attached to the roles later: the writer's overwrites of data
# objects and every history action, the other roles' writes of backups and loosening of
# the protection, are refused by the bucket itself. Plain HTTP is refused to everyone.
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
  statement {
    sid       = "NoRoleLoosensProtection"
    effect    = "Deny"
    actions   = local.protection_actions
    resources = [local.bucket_arn, "${local.bucket_arn}/*"]
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
  statement {
    sid       = "OnlyTheWriterWritesBackups"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = concat(local.data_object_arns, local.manifest_arns)
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:PrincipalArn"
      values   = concat([aws_iam_role.pruner.arn], local.reader_role_arns)
    }
  }
  statement {
    sid       = "ReadersNeverDelete"
    effect    = "Deny"
    actions   = ["s3:DeleteObject", "s3:DeleteObjectVersion"]
    resources = ["${local.bucket_arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:PrincipalArn"
      values   = local.reader_role_arns
    }
  }
}
