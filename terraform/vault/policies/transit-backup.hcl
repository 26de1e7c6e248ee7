# dr-transit-backup, on the SEPARATE transit Vault of a `vault-transit` recipient
# (docs/keys.md): dr backup and dr rewrap --add wrap the data key. Encrypt only: the
# backup host can never unwrap a stored backup's key.
path "transit/encrypt/vault-dr" {
  capabilities = ["update"]
}
