variable "bucket_name" {
  description = "S3 bucket that holds the encrypted backups."
  type        = string
}

variable "cluster" {
  description = "vault-dr cluster name (config `cluster`); scopes the KMS EncryptionContext condition."
  type        = string
}

variable "object_lock_days" {
  description = "Object Lock default retention in days, COMPLIANCE mode: no one (the account root included) can delete a version before it ends. Must be >= noncurrent_version_days (precondition in main.tf)."
  type        = number
  default     = 90

  validation {
    condition     = var.object_lock_days >= 1 && floor(var.object_lock_days) == var.object_lock_days
    error_message = "object_lock_days must be a whole number of days >= 1: Object Lock is always on."
  }
}

variable "noncurrent_version_days" {
  description = "Days to keep noncurrent object versions (old manifests after rewrap); at most object_lock_days."
  type        = number
  default     = 90

  validation {
    condition     = var.noncurrent_version_days >= 1 && floor(var.noncurrent_version_days) == var.noncurrent_version_days
    error_message = "noncurrent_version_days must be a whole number of days >= 1."
  }
}

variable "backup_principal_arns" {
  description = "Principals (e.g. the backup host's instance role) allowed to assume the backup role."
  type        = list(string)
}

variable "restore_principal_arns" {
  description = "Principals allowed to assume the restore/drill role."
  type        = list(string)
}
