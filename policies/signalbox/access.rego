# Access: which routes, models and tools a caller's roles grant.
#
# Grants are data (data.signalbox.permissions), so operators change who may do what without
# touching Rego: permissions.routes names each route (method + path), and permissions.roles maps
# a role to the routes, models and tools it grants. A grant is an exact name, "*", or a prefix
# ending in "*". Every model and tool a request names must be granted, and the route too.
package signalbox.authz

permissions := data.signalbox.permissions

deny_reasons contains "route.not_allowed" if {
	input.identity.verified
	not route_granted
}

deny_reasons contains "model.not_allowed" if {
	input.identity.verified
	some model in requested_models
	not granted("models", model)
}

deny_reasons contains "tool.not_allowed" if {
	input.identity.verified
	some tool in requested_tools
	not granted("tools", tool)
}

# ---------------------------------------------------------------------------------------------
# What the request asks for.

request_method := upper(input.attributes.request.http.method)

request_path := concat("/", ["", concat("/", input.parsed_path)])

# The routes (by name in data) this request matches.
matched_routes contains name if {
	some name, route in permissions.routes
	route.method == request_method
	route.path == request_path
}

requested_models contains model if {
	model := input.parsed_body.model
	is_string(model)
}

# OpenAI chat completions: tools[].function.name
requested_tools contains name if {
	some tool in input.parsed_body.tools
	name := tool.function.name
}

# OpenAI responses API and Anthropic messages: tools[].name
requested_tools contains name if {
	some tool in input.parsed_body.tools
	name := tool.name
}

# MCP tools/call: params.name
requested_tools contains name if {
	input.parsed_body.method == "tools/call"
	name := input.parsed_body.params.name
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
