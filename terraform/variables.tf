# Inputs of the module. Every one is checked at plan time: a value that would weaken
# what keeps a backup (a lock shorter than the noncurrent expiry, a wildcard in the key
# prefix, an OIDC subject that matches more than one repository) fails the plan.

variable "bucket_name" {
  description = "S3 bucket that holds the encrypted backups (config storage.bucket). Created by this module, with Object Lock."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be a valid S3 bucket name: 3-63 lower-case letters, digits, dots and hyphens."
  }
}

variable "cluster" {
  description = "vault-dr cluster name (config `cluster`). Every KMS use must carry the EncryptionContext vault-dr:cluster = this value; it also names the roles."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9_.-]{0,38}$", var.cluster))
    error_message = "cluster must be 1-39 letters, digits, '_', '.' or '-' (it is part of IAM role names)."
  }
}

variable "key_prefix" {
  description = "Key prefix the roles are confined to: the config's storage.prefix followed by '/', e.g. \"backups/\". Empty: the whole bucket (the bucket is vault-dr's own)."
  type        = string
  default     = ""

  validation {
    # No IAM wildcard may come in through the prefix, and it must end at a '/' so that
    # "prod/" does not also open "prod-old/".
    condition     = var.key_prefix == "" || can(regex("^[A-Za-z0-9!_.'()-]+(/[A-Za-z0-9!_.'()-]+)*/$", var.key_prefix))
    error_message = "key_prefix must be empty or end with '/', with no leading '/', no '*', '?' or '$'."
  }
}

variable "object_lock_mode" {
  description = "Object Lock default retention mode. COMPLIANCE: no one, the account root included, can delete a version or shorten its retention before it ends. GOVERNANCE: a principal with s3:BypassGovernanceRetention can (no role of this module has it)."
  type        = string
  default     = "COMPLIANCE"

  validation {
    condition     = contains(["COMPLIANCE", "GOVERNANCE"], var.object_lock_mode)
    error_message = "object_lock_mode must be COMPLIANCE or GOVERNANCE."
  }
}

variable "object_lock_days" {
  description = "Object Lock default retention in days. Object Lock is always on. Must be >= noncurrent_version_days (precondition in main.tf)."
  type        = number
  default     = 90

  validation {
    condition     = var.object_lock_days >= 1 && floor(var.object_lock_days) == var.object_lock_days
    error_message = "object_lock_days must be a whole number of days >= 1: Object Lock is always on."
  }
}

variable "noncurrent_version_days" {
  description = "Days to keep noncurrent object versions (old manifests after rewrap, lock and state rewrites); at most object_lock_days."
  type        = number
  default     = 90

  validation {
    condition     = var.noncurrent_version_days >= 1 && floor(var.noncurrent_version_days) == var.noncurrent_version_days
    error_message = "noncurrent_version_days must be a whole number of days >= 1."
  }
}

variable "abort_incomplete_multipart_days" {
  description = "Days after which S3 aborts a multipart upload that was never completed (a killed backup). dr prune removes them after retention.debris_grace too."
  type        = number
  default     = 2

  validation {
    condition     = var.abort_incomplete_multipart_days >= 1 && var.abort_incomplete_multipart_days <= 30 && floor(var.abort_incomplete_multipart_days) == var.abort_incomplete_multipart_days
    error_message = "abort_incomplete_multipart_days must be a whole number from 1 to 30."
  }
}

variable "kms_deletion_window_days" {
  description = "Waiting period before a KMS key scheduled for deletion is deleted (7-30). Only kms_admin_arns and the account root may schedule it."
  type        = number
  default     = 30

  validation {
    condition     = var.kms_deletion_window_days >= 7 && var.kms_deletion_window_days <= 30 && floor(var.kms_deletion_window_days) == var.kms_deletion_window_days
    error_message = "kms_deletion_window_days must be a whole number from 7 to 30."
  }
}

variable "kms_admin_arns" {
  description = "IAM role or user ARNs that may administer the KMS keys (disable, schedule deletion, change the key policy, create grants), besides the account root and the identity running terraform."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for a in var.kms_admin_arns : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:(role|user)/[^*?]+$", a))])
    error_message = "kms_admin_arns must be IAM role or user ARNs without wildcards."
  }
}

variable "backup_principal_arns" {
  description = "Principals allowed to assume the backup-writer role (dr backup, dr rewrap --identity): e.g. the backup host's instance role, or an EKS IRSA role."
  type        = list(string)

  validation {
    condition     = length(var.backup_principal_arns) > 0 && alltrue([for a in var.backup_principal_arns : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:(root|role/.+|user/.+)$", a)) && !strcontains(a, "*")])
    error_message = "backup_principal_arns must be one or more IAM ARNs without wildcards."
  }
}

variable "pruner_principal_arns" {
  description = "Principals allowed to assume the pruner role (dr prune). Use a host other than the backup host: the pruner can delete versions once Object Lock lets it."
  type        = list(string)

  validation {
    condition     = length(var.pruner_principal_arns) > 0 && alltrue([for a in var.pruner_principal_arns : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:(root|role/.+|user/.+)$", a)) && !strcontains(a, "*")])
    error_message = "pruner_principal_arns must be one or more IAM ARNs without wildcards."
  }
}

variable "drill_principal_arns" {
  description = "Principals allowed to assume the drill-reader role (dr drill, dr verify, dr restore, dr status) outside GitHub Actions: the drill host, the incident commander's role."
  type        = list(string)

  validation {
    condition     = length(var.drill_principal_arns) > 0 && alltrue([for a in var.drill_principal_arns : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:(root|role/.+|user/.+)$", a)) && !strcontains(a, "*")])
    error_message = "drill_principal_arns must be one or more IAM ARNs without wildcards."
  }
}

variable "github_repository" {
  description = "\"owner/repo\" whose drill workflow may assume the drill role through GitHub's OIDC provider. Empty: no GitHub role is created."
  type        = string
  default     = ""

  validation {
    condition     = var.github_repository == "" || can(regex("^[A-Za-z0-9][A-Za-z0-9-]*/[A-Za-z0-9_.-]+$", var.github_repository))
    error_message = "github_repository must be \"owner/repo\" (no wildcards), or empty."
  }
}

variable "github_branch" {
  description = "The branch whose workflow runs may assume the GitHub drill role (sub repo:OWNER/REPO:ref:refs/heads/BRANCH). Ignored when github_environment is set."
  type        = string
  default     = "main"

  validation {
    condition     = can(regex("^[A-Za-z0-9_./-]+$", var.github_branch))
    error_message = "github_branch must be a branch name without wildcards."
  }
}

variable "github_environment" {
  description = "A GitHub environment (with its own protection rules) instead of a branch: sub repo:OWNER/REPO:environment:NAME. Empty: the branch is used."
  type        = string
  default     = ""

  validation {
    condition     = var.github_environment == "" || can(regex("^[A-Za-z0-9_.-]+$", var.github_environment))
    error_message = "github_environment must be an environment name without wildcards, or empty."
  }
}

variable "unseal_keys_secret_arns" {
  description = "Secrets Manager secrets (full ARNs) holding the SOURCE cluster's unseal/recovery keys (the init JSON) that the GitHub drill workflow reads (input unseal-keys-secret). Empty: the GitHub role reads no secret."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for arn in var.unseal_keys_secret_arns : can(regex("^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:[A-Za-z0-9/_+=.@-]+$", arn))])
    error_message = "unseal_keys_secret_arns must be full Secrets Manager secret ARNs, without wildcards."
  }
}

variable "github_oidc_provider_arn" {
  description = "ARN of an existing token.actions.githubusercontent.com OIDC provider (an account holds one per URL). Empty: this module creates it when github_repository is set."
  type        = string
  default     = ""

  validation {
    condition     = var.github_oidc_provider_arn == "" || can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:oidc-provider/token\\.actions\\.githubusercontent\\.com$", var.github_oidc_provider_arn))
    error_message = "github_oidc_provider_arn must be the ARN of the token.actions.githubusercontent.com provider, or empty."
  }
}

variable "replication_enabled" {
  description = "Replicate every new object version to a bucket in the region of the aws.replica provider (own KMS key, versioning, Object Lock with the same mode and days)."
  type        = bool
  default     = false
}

variable "replica_bucket_name" {
  description = "Name of the replica bucket. Empty: \"<bucket_name>-replica\"."
  type        = string
  default     = ""

  validation {
    condition     = var.replica_bucket_name == "" || can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.replica_bucket_name))
    error_message = "replica_bucket_name must be a valid S3 bucket name, or empty."
  }
}

variable "tags" {
  description = "Tags added to every resource that takes tags."
  type        = map(string)
  default     = {}
}
