# JWT + RBAC for opa-envoy-plugin: the peer benchmark's counterpart of Signalbox's default policy.
#
# The caller's ES256 JWT is verified in Rego (io.jwt.decode_verify: signature against the same
# public key Signalbox is configured with, issuer, audience, expiry), and its roles are checked
# against the same grants Signalbox reads (data.signalbox.permissions, copied from
# policies/signalbox/data.json): the route (method + path), the model and every tool the OpenAI
# body names must be granted by one of the caller's roles. A grant is an exact name, "*", or a
# prefix ending in "*", as in policies/signalbox/access.rego. Decision path: envoy/authz/allow.
package envoy.authz

import rego.v1

permissions := data.signalbox.permissions

default allow := false

allow if {
	is_string(claims.sub)
	route_granted
	every model in requested_models {
		granted("models", model)
	}
	every tool in requested_tools {
		granted("tools", tool)
	}
}

# ---------------------------------------------------------------------------------------------
# Who is calling: the verified claims, or nothing.

bearer := token if {
	header := input.attributes.request.http.headers.authorization
	startswith(header, "Bearer ")
	token := substring(header, count("Bearer "), -1)
}

claims := payload if {
	[valid, _, payload] := io.jwt.decode_verify(bearer, {
		"cert": data.bench.jwks,
		"iss": data.bench.issuer,
		"aud": data.bench.audience,
	})
	valid
}

caller_roles contains role if {
	some role in claims.roles
	permissions.roles[role]
}

# ---------------------------------------------------------------------------------------------
# What the request asks for.

request_path := concat("/", ["", concat("/", input.parsed_path)])

matched_routes contains name if {
	some name, route in permissions.routes
	route.method == upper(input.attributes.request.http.method)
	route.path == request_path
}

requested_models contains model if {
	model := input.parsed_body.model
	is_string(model)
}

requested_tools contains name if {
	some tool in input.parsed_body.tools
	name := tool.function.name
}

# ---------------------------------------------------------------------------------------------
# What the caller's roles grant.

route_granted if {
	some route in matched_routes
	granted("routes", route)
}

granted(kind, value) if {
	some role in caller_roles
	some pattern in permissions.roles[role][kind]
	pattern_matches(pattern, value)
}

pattern_matches(pattern, value) if pattern == value

pattern_matches("*", _)

pattern_matches(pattern, value) if {
	endswith(pattern, "*")
	startswith(value, trim_suffix(pattern, "*"))
}
