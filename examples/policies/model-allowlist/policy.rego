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
	"headers": {"x-signalbox-user": input.identity.subject, "x-signalbox-team": team},
	"request_headers_to_remove": ["authorization"],
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
