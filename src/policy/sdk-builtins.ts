/**
 * The builtins @open-policy-agent/opa-wasm implements in JavaScript (src/builtins/*.js). The
 * package's exports map hides that folder, so the list is kept here and a test reads the
 * installed package to make sure it still matches after an upgrade.
 */
export const SDK_BUILTINS: readonly string[] = Object.freeze([
  'json.is_valid',
  'regex.split',
  'sprintf',
  'yaml.is_valid',
  'yaml.marshal',
  'yaml.unmarshal',
]);
