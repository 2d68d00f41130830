// Command envoy-client proves Signalbox's Envoy integration with Envoy's own generated Go types
// (go-control-plane), since Envoy's binary cannot run in the test environment.
//
//	envoy-client check -addr 127.0.0.1:9191 < cases.json
//	envoy-client validate examples/envoy/envoy.yaml [more.yaml ...]
//	envoy-client ext-proc < request.json
//
// check reads {"cases": [{"name": "...", "request": <CheckRequest as protojson>}]} on stdin,
// sends each request to envoy.service.auth.v3.Authorization/Check with the generated client (the
// same types Envoy's C++ is generated from), checks every response against Envoy's
// protoc-gen-validate rules, and prints {"results": [{"name", "grpc_code", "grpc_message",
// "response": <CheckResponse as protojson>, "validation_error"}]}. Unknown request fields are an
// error, so a case cannot silently send less than it says.
//
// validate parses each Envoy YAML file the way Envoy does (YAML → JSON → protojson into
// envoy.config.bootstrap.v3.Bootstrap, unknown fields and unregistered typed_config types
// rejected), then runs protoc-gen-validate's ValidateAll on the bootstrap and on the contents of
// every google.protobuf.Any inside it (typed_config and friends), since ValidateAll does not
// look inside an Any. It prints {"files": [{"path", "ok", "error", "typed_configs"}]} and exits
// 1 when any file fails.
//
// ext-proc plays Envoy 1.40's ext_proc HTTP filter for one downstream request: it opens one
// envoy.service.ext_proc.v3.ExternalProcessor/Process stream to the processor, sends the request
// and response phases per the processing mode, applies the processor's mutations by Envoy's rules,
// calls a real upstream over HTTP/1.1, and prints what the client and the upstream received and a
// trace of the messages (extproc_io.go documents both documents). A protocol violation by the
// processor (an invalid or spurious response, a timeout, a mutation Envoy would silently drop) is
// reported in "error" and exits 1.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "check":
		err = runCheck(os.Args[2:])
	case "validate":
		err = runValidate(os.Args[2:])
	case "ext-proc":
		err = runExtProc(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "envoy-client:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: envoy-client check -addr HOST:PORT < cases.json | envoy-client validate FILE... | envoy-client ext-proc < request.json")
	os.Exit(2)
}

type checkCase struct {
	Name    string          `json:"name"`
	Request json.RawMessage `json:"request"`
}

type checkResult struct {
	Name            string          `json:"name"`
	GrpcCode        int             `json:"grpc_code"`
	GrpcMessage     string          `json:"grpc_message,omitempty"`
	Response        json.RawMessage `json:"response,omitempty"`
	ValidationError string          `json:"validation_error,omitempty"`
}

func runCheck(args []string) error {
	flags := flag.NewFlagSet("check", flag.ContinueOnError)
	addr := flags.String("addr", "127.0.0.1:9191", "Signalbox's gRPC address")
	timeout := flags.Duration("timeout", 10*time.Second, "deadline per Check call")
	if err := flags.Parse(args); err != nil {
		return err
	}
	input, err := io.ReadAll(os.Stdin)
	if err != nil {
		return fmt.Errorf("reading stdin: %w", err)
	}
	var script struct {
		Cases []checkCase `json:"cases"`
	}
	decoder := json.NewDecoder(bytes.NewReader(input))
	decoder.DisallowUnknownFields()
	if err := decoder.Decode(&script); err != nil {
		return fmt.Errorf("stdin is not {\"cases\": [...]}: %w", err)
	}
	conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("dialing %s: %w", *addr, err)
	}
	defer conn.Close()
	client := authv3.NewAuthorizationClient(conn)
	results := make([]checkResult, 0, len(script.Cases))
	for _, c := range script.Cases {
		request := &authv3.CheckRequest{}
		if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(c.Request, request); err != nil {
			return fmt.Errorf("case %q: request is not a CheckRequest: %w", c.Name, err)
		}
		if err := request.ValidateAll(); err != nil {
			return fmt.Errorf("case %q: request fails Envoy's validation: %w", c.Name, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), *timeout)
		response, err := client.Check(ctx, request)
		cancel()
		result := checkResult{Name: c.Name}
		if err != nil {
			st := status.Convert(err)
			result.GrpcCode = int(st.Code())
			result.GrpcMessage = st.Message()
		} else {
			raw, err := protojson.Marshal(response)
			if err != nil {
				return fmt.Errorf("case %q: marshalling the response: %w", c.Name, err)
			}
			result.Response = raw
			if err := response.ValidateAll(); err != nil {
				result.ValidationError = err.Error()
			}
		}
		results = append(results, result)
	}
	return writeJSON(map[string]any{"results": results})
}

type fileResult struct {
	Path         string   `json:"path"`
	OK           bool     `json:"ok"`
	Error        string   `json:"error,omitempty"`
	TypedConfigs []string `json:"typed_configs,omitempty"`
}

func runValidate(paths []string) error {
	if len(paths) == 0 {
		return errors.New("validate: name at least one Envoy config file")
	}
	results := make([]fileResult, 0, len(paths))
	failed := 0
	for _, path := range paths {
		types, err := validateFile(path)
		result := fileResult{Path: path, OK: err == nil, TypedConfigs: types}
		if err != nil {
			result.Error = err.Error()
			failed++
		}
		results = append(results, result)
	}
	if err := writeJSON(map[string]any{"files": results}); err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d Envoy configs failed validation", failed, len(paths))
	}
	return nil
}

// validateFile returns the type URLs of every Any it checked, in document order.
func validateFile(path string) ([]string, error) {
	source, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	asJSON, err := yaml.YAMLToJSON(source)
	if err != nil {
		return nil, fmt.Errorf("not YAML: %w", err)
	}
	bootstrap := &bootstrapv3.Bootstrap{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(asJSON, bootstrap); err != nil {
		return nil, fmt.Errorf("not an envoy.config.bootstrap.v3.Bootstrap: %w", err)
	}
	if err := bootstrap.ValidateAll(); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	var types []string
	if err := validateAnys(bootstrap.ProtoReflect(), "bootstrap", &types); err != nil {
		return types, err
	}
	return types, nil
}

type validatable interface{ ValidateAll() error }

// validateAnys walks msg and validates the message packed in every Any, recursively.
func validateAnys(msg protoreflect.Message, where string, types *[]string) error {
	if any, ok := msg.Interface().(*anypb.Any); ok {
		inner, err := any.UnmarshalNew()
		if err != nil {
			return fmt.Errorf("%s: %s: %w", where, any.GetTypeUrl(), err)
		}
		*types = append(*types, any.GetTypeUrl())
		v, ok := inner.(validatable)
		if !ok {
			return fmt.Errorf("%s: %s has no ValidateAll", where, any.GetTypeUrl())
		}
		if err := v.ValidateAll(); err != nil {
			return fmt.Errorf("%s (%s): %w", where, any.GetTypeUrl(), err)
		}
		return validateAnys(inner.ProtoReflect(), where+"<"+string(proto.MessageName(inner))+">", types)
	}
	var walkErr error
	msg.Range(func(fd protoreflect.FieldDescriptor, value protoreflect.Value) bool {
		name := where + "." + string(fd.Name())
		switch {
		case fd.IsMap():
			if fd.MapValue().Kind() != protoreflect.MessageKind {
				return true
			}
			value.Map().Range(func(key protoreflect.MapKey, v protoreflect.Value) bool {
				walkErr = validateAnys(v.Message(), fmt.Sprintf("%s[%s]", name, key.String()), types)
				return walkErr == nil
			})
		case fd.IsList():
			if fd.Kind() != protoreflect.MessageKind && fd.Kind() != protoreflect.GroupKind {
				return true
			}
			list := value.List()
			for i := 0; i < list.Len() && walkErr == nil; i++ {
				walkErr = validateAnys(list.Get(i).Message(), fmt.Sprintf("%s[%d]", name, i), types)
			}
		case fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind:
			walkErr = validateAnys(value.Message(), name, types)
		}
		return walkErr == nil
	})
	return walkErr
}

func writeJSON(value any) error {
	encoder := json.NewEncoder(os.Stdout)
	encoder.SetIndent("", "  ")
	return encoder.Encode(value)
}
