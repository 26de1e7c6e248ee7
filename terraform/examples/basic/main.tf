# The module for one cluster, "prod", in eu-west-1, replicated to eu-central-1, with
# the GitHub drill workflow of acme/infra allowed from its "dr-drill" environment.
#
#   terraform init && terraform apply
#
# Then put the outputs in dr.yaml (storage.bucket, the aws-kms recipient's key_id) and
# give each job its role (terraform/README.md).

terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
  }
}

provider "aws" {
  region = "eu-west-1"
}

# The second region. Needed even with replication_enabled = false (nothing is created
# there then): a module's provider alias cannot be optional.
provider "aws" {
  alias  = "replica"
  region = "eu-central-1"
}

module "vault_dr" {
  source = "../.."
  providers = {
    aws         = aws
    aws.replica = aws.replica
  }

  bucket_name = "acme-vault-backups-prod"
  cluster     = "prod"
  key_prefix  = "backups/" # storage.prefix: backups

  object_lock_mode        = "COMPLIANCE"
  object_lock_days        = 90
  noncurrent_version_days = 90

  backup_principal_arns = ["arn:aws:iam::123456789012:role/vault-backup-host"]
  pruner_principal_arns = ["arn:aws:iam::123456789012:role/vault-dr-ops"]
  drill_principal_arns  = ["arn:aws:iam::123456789012:role/vault-dr-oncall"]
  kms_admin_arns        = ["arn:aws:iam::123456789012:role/security-admin"]

  github_repository  = "acme/infra"
  github_environment = "dr-drill"

  replication_enabled = true

  tags = { service = "vault-dr", cluster = "prod" }
}

output "dr_yaml" {
  description = "The values dr.yaml needs."
  value = {
    bucket  = module.vault_dr.bucket
    kms_key = module.vault_dr.kms_alias
    writer  = module.vault_dr.backup_writer_role_arn
    pruner  = module.vault_dr.pruner_role_arn
    drill   = module.vault_dr.drill_reader_role_arn
    github  = module.vault_dr.github_drill_role_arn
    replica = module.vault_dr.replica_bucket
  }
}
