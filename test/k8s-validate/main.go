// Command k8s-validate checks Kubernetes manifests (the output of `helm template`) against
// Kubernetes' own Go types: every document of the YAML stream on stdin is decoded strictly by
// apimachinery's serializer into its k8s.io/api type, so an unknown field, a duplicated field, a
// value of the wrong type or a kind this program does not know is an error, as `kubectl apply
// --validate=strict` would make it. Names, label keys and values and port names are checked with
// apimachinery's validation rules too.
//
// On success it prints a JSON array, one entry per document: {apiVersion, kind, name, object},
// where object is the typed value encoded again (so the caller asserts on what Kubernetes would
// read, not on the YAML text). On any problem it prints every one to stderr and exits 1.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/util/validation"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsyaml "sigs.k8s.io/yaml"
)

// document is one decoded manifest, as printed.
type document struct {
	APIVersion string          `json:"apiVersion"`
	Kind       string          `json:"kind"`
	Name       string          `json:"name"`
	Object     json.RawMessage `json:"object"`
}

func newScheme() (*runtime.Scheme, error) {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, policyv1.AddToScheme, batchv1.AddToScheme,
		networkingv1.AddToScheme, autoscalingv2.AddToScheme, rbacv1.AddToScheme,
	} {
		if err := add(scheme); err != nil {
			return nil, err
		}
	}
	return scheme, nil
}

// isEmpty reports a document with nothing but comments (helm leaves one for a template that
// rendered nothing).
func isEmpty(raw []byte) (bool, error) {
	var value interface{}
	if err := sigsyaml.Unmarshal(raw, &value); err != nil {
		return false, err
	}
	return value == nil, nil
}

// checkNames applies apimachinery's rules to the name and labels of an object.
func checkNames(obj runtime.Object) []string {
	accessor, err := meta.Accessor(obj)
	if err != nil {
		return []string{err.Error()}
	}
	var problems []string
	for _, msg := range validation.IsDNS1123Subdomain(accessor.GetName()) {
		problems = append(problems, fmt.Sprintf("metadata.name %q: %s", accessor.GetName(), msg))
	}
	labels := map[string]string{}
	for k, v := range accessor.GetLabels() {
		labels[k] = v
	}
	if d, ok := obj.(*appsv1.Deployment); ok {
		for k, v := range d.Spec.Template.Labels {
			labels[k] = v
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			for _, p := range c.Ports {
				for _, msg := range validation.IsValidPortName(p.Name) {
					problems = append(problems, fmt.Sprintf("container %s port %q: %s", c.Name, p.Name, msg))
				}
			}
		}
	}
	for k, v := range labels {
		for _, msg := range validation.IsQualifiedName(k) {
			problems = append(problems, fmt.Sprintf("label key %q: %s", k, msg))
		}
		for _, msg := range validation.IsValidLabelValue(v) {
			problems = append(problems, fmt.Sprintf("label %s value %q: %s", k, v, msg))
		}
	}
	return problems
}

func run(in io.Reader, out io.Writer) error {
	scheme, err := newScheme()
	if err != nil {
		return err
	}
	decoder := kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme, scheme, kjson.SerializerOptions{Yaml: true, Strict: true})
	reader := utilyaml.NewYAMLReader(bufio.NewReader(in))
	var docs []document
	var problems []string
	for index := 0; ; index++ {
		raw, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("document %d: %w", index, err)
		}
		if empty, err := isEmpty(raw); err != nil {
			problems = append(problems, fmt.Sprintf("document %d: not YAML: %v", index, err))
			continue
		} else if empty {
			continue
		}
		obj, gvk, err := decoder.Decode(bytes.TrimSpace(raw), nil, nil)
		if err != nil {
			where := fmt.Sprintf("document %d", index)
			if gvk != nil {
				where = fmt.Sprintf("document %d (%s)", index, gvk.Kind)
			}
			problems = append(problems, fmt.Sprintf("%s: %v", where, err))
			continue
		}
		for _, p := range checkNames(obj) {
			problems = append(problems, fmt.Sprintf("document %d (%s): %s", index, gvk.Kind, p))
		}
		encoded, err := json.Marshal(obj)
		if err != nil {
			return err
		}
		accessor, _ := meta.Accessor(obj)
		docs = append(docs, document{APIVersion: gvk.GroupVersion().String(), Kind: gvk.Kind, Name: accessor.GetName(), Object: encoded})
	}
	if len(problems) > 0 {
		return errors.New("invalid manifests:\n  " + joinLines(problems))
	}
	if len(docs) == 0 {
		return errors.New("no manifests on stdin")
	}
	return json.NewEncoder(out).Encode(docs)
}

func joinLines(lines []string) string {
	var b bytes.Buffer
	for i, line := range lines {
		if i > 0 {
			b.WriteString("\n  ")
		}
		b.WriteString(line)
	}
	return b.String()
}

func main() {
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "k8s-validate:", err)
		os.Exit(1)
	}
}
