variable "bucket_name" {
  description = "S3 bucket that holds the encrypted backups."
  type        = string
}

variable "cluster" {
  description = "vault-dr cluster name (config `cluster`); scopes the KMS EncryptionContext condition."
  type        = string
}

variable "object_lock_days" {
  description = "Default Object Lock retention in days (GOVERNANCE mode); 0 disables Object Lock. Object Lock can only be enabled when the bucket is created."
  type        = number
  default     = 0
}

variable "noncurrent_version_days" {
  description = "Days to keep noncurrent object versions (old manifests after rewrap, deleted backups)."
  type        = number
  default     = 90
}

variable "backup_principal_arns" {
  description = "Principals (e.g. the backup host's instance role) allowed to assume the backup role."
  type        = list(string)
}

variable "restore_principal_arns" {
  description = "Principals allowed to assume the restore/drill role."
  type        = list(string)
}
