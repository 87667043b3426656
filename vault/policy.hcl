# CoffeeBuddy's Vault policy: read the one KV v2 secret it needs (Slack's signing secret), nothing
# else. The path is the KV v2 data path of VAULT_KV_MOUNT/SLACK_SIGNING_SECRET_VAULT_PATH
# (knative/service.yaml); the tests keep them equal.
path "secret/data/coffeebuddy/slack" {
  capabilities = ["read"]
}
