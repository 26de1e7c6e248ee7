output "bucket" {
  description = "The backup bucket's name (config storage.bucket)."
  value       = aws_s3_bucket.backups.id
}

output "bucket_arn" {
  description = "The backup bucket's ARN."
  value       = aws_s3_bucket.backups.arn
}

output "kms_key_arn" {
  description = "ARN of the KMS key that wraps data keys (an aws-kms recipient's key_id may be this or the alias)."
  value       = aws_kms_key.backup.arn
}

output "kms_alias" {
  description = "The key's alias, for the aws-kms recipient's key_id in dr.yaml."
  value       = aws_kms_alias.backup.name
}

output "backup_writer_role_arn" {
  description = "Role for dr backup and dr rewrap (with --identity)."
  value       = aws_iam_role.backup.arn
}

output "pruner_role_arn" {
  description = "Role for dr prune."
  value       = aws_iam_role.pruner.arn
}

output "drill_reader_role_arn" {
  description = "Role for dr drill, dr verify, dr restore and dr status from a host."
  value       = aws_iam_role.drill_reader.arn
}

output "github_drill_role_arn" {
  description = "Role the GitHub drill workflow assumes (role-to-assume of aws-actions/configure-aws-credentials); null without github_repository."
  value       = one(aws_iam_role.github_drill[*].arn)
}

output "github_oidc_subject" {
  description = "The only token.actions.githubusercontent.com:sub the GitHub drill role trusts; null without github_repository."
  value       = local.github_enabled ? local.github_subject : null
}

output "replica_bucket" {
  description = "The replica bucket's name; null without replication."
  value       = one(aws_s3_bucket.replica[*].id)
}

output "replica_kms_key_arn" {
  description = "The replica bucket's KMS key; null without replication."
  value       = one(aws_kms_key.replica[*].arn)
}
