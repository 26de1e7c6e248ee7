# Optional: writes vault-dr's Vault policies (policies/*.hcl) with the vault provider.
# Off by default: nothing is written until `policies` names some. The policies belong
# to different Vaults, so call this module once per Vault with that Vault's provider:
#
#   module "vault_dr_source_policies" {        # the cluster being backed up
#     source    = "github.com/.../vault-dr//terraform/vault"
#     policies  = ["backup"]
#   }
#   module "vault_dr_transit_policies" {       # the separate transit Vault
#     source    = "github.com/.../vault-dr//terraform/vault"
#     providers = { vault = vault.transit }
#     policies  = ["transit-backup", "drill", "seal"]
#   }
#
# The same files work by hand: `bao policy write dr-backup policies/backup.hcl`.

terraform {
  required_version = ">= 1.5"
  required_providers {
    vault = {
      source  = "hashicorp/vault"
      version = ">= 3.0"
    }
  }
}

variable "policies" {
  description = "Which policies to write to this Vault: backup (the source cluster), transit-backup, drill and seal (the transit Vault). Empty: none."
  type        = set(string)
  default     = []

  validation {
    condition     = alltrue([for p in var.policies : contains(["backup", "transit-backup", "drill", "seal"], p)])
    error_message = "policies may name only backup, transit-backup, drill and seal."
  }
}

variable "name_prefix" {
  description = "Prefix of the policy names in Vault (dr-backup, dr-drill, ...), as docs/vault-policy.md binds them to login roles."
  type        = string
  default     = "dr-"
}

resource "vault_policy" "dr" {
  for_each = var.policies
  name     = "${var.name_prefix}${each.key}"
  policy   = file("${path.module}/policies/${each.key}.hcl")
}

output "policy_names" {
  description = "The names written, for token_policies of the login roles."
  value       = sort([for p in vault_policy.dr : p.name])
}
