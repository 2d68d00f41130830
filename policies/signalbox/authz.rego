# Signalbox default policy: deny by default.
#
# A request is allowed only when no module below finds a reason to deny it. The policy is split
# into modules of one package, each adding to deny_reasons and, on allow, to the response:
#   identity.rego  who is calling (verified JWT claims); identity headers for the upstream
#   access.rego    which routes, models and tools the caller's roles grant
#   budgets.rego   the budgets, rate limits and loop check Signalbox reserves on allow
#   content.rego   secrets and personal data in the body; tool calls aimed at internal addresses
#   routing.rego   which provider serves the model, with failover and the vault credential
# This file holds the decision and the responses: on allow, the verified identity, route and
# enforcement; on deny, a JSON error naming machine-readable reasons with a fitting status.
package signalbox.authz

# The headers gateways route on; Signalbox sets them from `route` and strips a caller's copy.
routing_headers_all := ["x-signalbox-provider", "x-signalbox-model", "x-signalbox-upstream", "x-signalbox-fallbacks"]

# METADATA
# entrypoint: true
# description: The decision Signalbox enforces for every request.
decision := allow_response if {
	count(deny_reasons) == 0
} else := deny_response

# ---------------------------------------------------------------------------------------------
# Responses. Every deny rule adds a machine-readable code to deny_reasons; any code denies.

allow_response := object.union_n([enforcement, routed, redaction, {
	"allowed": true,
	"headers": identity_header_values,
	# Strip the caller's credential, any identity header we did not set ourselves, and the
	# routing headers (Signalbox re-sets those its route names), so the upstream and the
	# gateway's routes can trust x-signalbox-* to come from Signalbox.
	"request_headers_to_remove": array.concat(
		array.concat(["authorization"], [h | some h in identity_headers_all; not identity_header_values[h]]),
		routing_headers_all,
	),
	"reasons": ["allowed"],
}])

deny_status := 503 if {
	not input.identity.verified
	identity_provider_down
} else := 401 if {
	not input.identity.verified
} else := 413 if {
	"content.truncated" in deny_reasons
} else := 503 if {
	deny_reasons == {"route.no_healthy_provider"}
} else := 429 if {
	every reason in deny_reasons {
		reason == "budget.economy_only"
	}
} else := 403

deny_response := {
	"allowed": false,
	"http_status": deny_status,
	"headers": deny_headers,
	"body": json.marshal({"error": {
		"code": sorted_reasons[0],
		"reasons": sorted_reasons,
		"message": deny_message,
	}}),
	"reasons": sorted_reasons,
}

sorted_reasons := sort([r | some r in deny_reasons])

deny_headers := {"content-type": "application/json", "www-authenticate": `Bearer realm="signalbox", error="invalid_token"`} if {
	deny_status == 401
} else := {"content-type": "application/json"}

deny_message := "authentication required: present a valid bearer token" if {
	deny_status == 401
} else := "budget nearly spent: only economy models are allowed until it resets" if {
	deny_status == 429
} else := "the request body could not be inspected in full; send it whole" if {
	deny_status == 413
} else := "the identity provider cannot be reached, so the token cannot be verified; retry shortly" if {
	identity_provider_down
} else := "no provider for this model is available; retry shortly" if {
	deny_status == 503
} else := "the request cost cannot be estimated for the budgets that apply" if {
	sorted_reasons == ["budget.model_unpriced"]
} else := "this gateway does not forward request bodies, and the policy requires every request body to be scanned" if {
	sorted_reasons == ["content.not_scanned"]
} else := "the request carries content that may not be sent (secrets or sensitive personal data)" if {
	every reason in sorted_reasons {
		startswith(reason, "content.")
	}
} else := "a tool call targets an internal or unresolvable address" if {
	every reason in sorted_reasons {
		startswith(reason, "destination.")
	}
} else := "the caller's roles do not grant this request"
