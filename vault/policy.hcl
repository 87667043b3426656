# CoffeeBuddy's Vault policy: read the two KV v2 secrets it needs (Slack's signing secret and the
# PostgreSQL password), nothing else. The paths are the KV v2 data paths of
# VAULT_KV_MOUNT/SLACK_SIGNING_SECRET_VAULT_PATH and VAULT_KV_MOUNT/PG_PASSWORD_VAULT_PATH
# (knative/service.yaml); the tests keep them equal.
path "secret/data/coffeebuddy/slack" {
  capabilities = ["read"]
}

path "secret/data/coffeebuddy/postgres" {
  capabilities = ["read"]
}
