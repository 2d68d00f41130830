# Identity: who is calling, as Signalbox verified it.
#
# input.identity holds only verified claims (signature, issuer, audience, expiry checked by
# Signalbox with jose before the policy runs); when verification failed, `verified` is false and
# input.identity.error.code says why (missing, expired, bad signature, ...). An unverified caller
# is denied with 401 and reason identity.<code>, unless the identity provider is down: then 503
# and identity.provider_unavailable. On allow, the verified identity is handed
# upstream as x-signalbox-* headers, and any identity header Signalbox did not set is removed,
# so upstreams can trust them.
package signalbox.authz

identity_headers_all := ["x-signalbox-user", "x-signalbox-team", "x-signalbox-tenant", "x-signalbox-roles", "x-signalbox-actor"]

deny_reasons contains identity_reason if {
	not input.identity.verified
}

identity_error := input.identity.error.code if input.identity.error.code

else := "unverified"

# The identity provider's outage (its JWKS could not be fetched) is not the caller's fault: it
# gets its own reason, and authz.rego answers it with 503 and a retry, not 401.
identity_provider_down if input.identity.error.code == "jwks_unavailable"

identity_reason := "identity.provider_unavailable" if {
	identity_provider_down
} else := concat("", ["identity.", identity_error])

# The caller's roles that the grants in data.signalbox.permissions know about.
caller_roles contains role if {
	some role in input.identity.roles
	permissions.roles[role]
}

identity_header_values := {name: value |
	some name, value in {
		"x-signalbox-user": input.identity.subject,
		"x-signalbox-team": object.get(input.identity, "team", null),
		"x-signalbox-tenant": object.get(input.identity, "tenant", null),
		"x-signalbox-roles": concat(",", sort([r | some r in caller_roles])),
		"x-signalbox-actor": object.get(object.get(input, "actor", {}), "subject", null),
	}
	is_string(value)
	value != ""
}
