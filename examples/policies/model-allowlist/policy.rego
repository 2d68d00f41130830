# The smallest useful Signalbox policy: verified callers may use the models their team is granted.
#
# Copy this folder, edit data.json, and build it:
#   signalbox build --src examples/policies/model-allowlist --out bundles/models.tar.gz
# then point Signalbox at it (policy.bundle: bundles/models.tar.gz,
# policy.decision: models/decision). `signalbox test examples/policies/model-allowlist` runs the
# Rego tests and the decision tables beside it.
package models

# METADATA
# entrypoint: true
# description: Allow a verified caller to use a model granted to their team.
decision := {
	"allowed": true,
	# The upstream learns who is calling from headers Signalbox sets; the caller's token stays here.
	"headers": upstream_headers,
	"request_headers_to_remove": headers_to_remove,
	"reasons": ["allowed"],
} if {
	count(deny) == 0
} else := {
	"allowed": false,
	"http_status": status,
	"headers": {"content-type": "application/json"},
	"body": json.marshal({"error": {"code": reasons[0], "reasons": reasons}}),
	"reasons": reasons,
}

reasons := sort([r | some r in deny])

# A token may carry no team claim; such a caller is granted nothing (not an undefined decision,
# which Signalbox would deny as policy_result_invalid).
team := object.get(input.identity, "team", "")

status := 401 if {
	not input.identity.verified
} else := 403

deny contains "identity.unverified" if not input.identity.verified

# A request that names no model is not an LLM call this policy knows; deny rather than guess.
deny contains "model.missing" if {
	input.identity.verified
	not names_model
}

names_model if is_string(input.parsed_body.model)

deny contains "model.not_allowed" if {
	input.identity.verified
	model := input.parsed_body.model
	is_string(model)
	not model in object.get(data.models.teams, team, [])
}

# What the upstream learns about the caller, from verified claims only.
upstream_headers := {"x-signalbox-user": input.identity.subject, "x-signalbox-team": team}

# Upstreams trust x-signalbox-* headers to come from Signalbox: remove the caller's token and any
# copy of those headers this policy does not set itself (Envoy, Kong and the native API pass
# request headers through unless told to remove them).
signalbox_headers := {
	"x-signalbox-user", "x-signalbox-team", "x-signalbox-tenant", "x-signalbox-roles", "x-signalbox-actor",
	"x-signalbox-provider", "x-signalbox-model", "x-signalbox-upstream", "x-signalbox-fallbacks",
}

headers_to_remove := array.concat(["authorization"], sort([h | some h in signalbox_headers; not upstream_headers[h]]))
