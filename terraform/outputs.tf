output "bucket" {
  value = aws_s3_bucket.backups.id
}

output "kms_alias" {
  value = aws_kms_alias.backup.name
}

output "backup_role_arn" {
  value = aws_iam_role.backup.arn
}

output "restore_role_arn" {
  value = aws_iam_role.restore.arn
}
