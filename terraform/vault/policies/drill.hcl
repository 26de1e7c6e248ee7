# dr-drill, on the SEPARATE transit Vault of a `vault-transit` recipient (docs/keys.md):
# dr drill, dr verify, dr restore and dr status unwrap the data key. Only needed when
# that recipient is the one a drill opens backups with (the aws-kms recipient needs the
# drill-reader role's kms:Decrypt instead, the offline identity nothing).
#
# The drill needs NO policy on the source cluster: it restores into a throwaway Vault it
# starts itself and makes a root token there from the source's unseal (or recovery)
# keys; that token is valid only in the throwaway (docs/vault-policy.md, `dr drill`).
path "transit/decrypt/vault-dr" {
  capabilities = ["update"]
}
