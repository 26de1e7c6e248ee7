# dr-seal, on the TRANSIT Vault that auto-unseals the source cluster (drill.seal,
# docs/vault-policy.md "The seal token"): only for drills and restores of a
# transit-sealed source. The throwaway (and the seal preflight of dr drill / dr restore)
# uses the token for exactly two operations on the seal key: the restored keyring is
# wrapped by it, so the throwaway cannot open the barrier without both.
path "transit/encrypt/autounseal" {
  capabilities = ["update"]
}

path "transit/decrypt/autounseal" {
  capabilities = ["update"]
}
