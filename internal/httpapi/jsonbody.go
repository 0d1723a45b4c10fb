package httpapi

import (
	"bytes"
	"encoding"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"

	"github.com/danielgtaylor/huma/v2"
)

// jsonFormat is the API's JSON format: encoding/json, except that a body
// decoded into its input struct matches member names exactly (a member
// spelled in another case, "Email" for "email", is an unknown member and
// ignored like any other) and a value that does not fit its field is
// reported by field name in plain words, never by Go type.
var jsonFormat = huma.Format{Marshal: huma.DefaultJSONFormat.Marshal, Unmarshal: unmarshalStrict}

// bodyErr is a decode error about one member of the body. Its text is
// "body.<path>: <message>"; huma passes it on as text only, and
// hookHumaErrors splits it back into field and message.
type bodyErr struct{ path, msg string }

func (e *bodyErr) Error() string { return "body" + e.path + ": " + e.msg }

var (
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

func unmarshalStrict(data []byte, v any) error {
	if _, ok := v.(*any); ok {
		// huma's validation pass: a generic value, checked against the
		// schema (with strict casing) afterwards.
		return json.Unmarshal(data, v)
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return json.Unmarshal(data, v)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var raw any
	if err := dec.Decode(&raw); err != nil {
		return err
	}
	clean, err := fit(rv.Type().Elem(), raw, "")
	if err != nil {
		return err
	}
	b, err := json.Marshal(clean)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// fit checks the decoded JSON value v against Go type t: it drops object
// members that match no field exactly and reports values that do not fit.
func fit(t reflect.Type, v any, path string) (any, error) {
	if v == nil {
		return nil, nil // null leaves any field as it is
	}
	if t.Kind() == reflect.Interface || t.Implements(jsonUnmarshaler) || reflect.PointerTo(t).Implements(jsonUnmarshaler) {
		return v, nil
	}
	if t.Kind() != reflect.String && (t.Implements(textUnmarshaler) || reflect.PointerTo(t).Implements(textUnmarshaler)) {
		return v, nil
	}
	switch t.Kind() {
	case reflect.Pointer:
		return fit(t.Elem(), v, path)
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return nil, &bodyErr{path, "must be an object"}
		}
		fields := map[string]reflect.Type{}
		jsonFields(t, fields)
		out := make(map[string]any, len(m))
		for k, mv := range m {
			ft, ok := fields[k]
			if !ok {
				continue // unknown, or known in another case: ignored
			}
			fv, err := fit(ft, mv, path+"."+k)
			if err != nil {
				return nil, err
			}
			out[k] = fv
		}
		return out, nil
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			return nil, &bodyErr{path, "must be an object"}
		}
		out := make(map[string]any, len(m))
		for k, mv := range m {
			fv, err := fit(t.Elem(), mv, path+"."+k)
			if err != nil {
				return nil, err
			}
			out[k] = fv
		}
		return out, nil
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return v, nil // bytes travel as base64 strings
		}
		a, ok := v.([]any)
		if !ok {
			return nil, &bodyErr{path, "must be an array"}
		}
		out := make([]any, len(a))
		for i, av := range a {
			fv, err := fit(t.Elem(), av, path+"["+strconv.Itoa(i)+"]")
			if err != nil {
				return nil, err
			}
			out[i] = fv
		}
		return out, nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := v.(json.Number)
		bits := t.Bits()
		if ok {
			if _, err := strconv.ParseInt(string(n), 10, bits); err == nil {
				return v, nil
			}
		}
		lo, hi := int64(-1)<<(bits-1), int64(1)<<(bits-1)-1
		return nil, &bodyErr{path, fmt.Sprintf("must be a whole number from %d to %d, written without a fraction or exponent", lo, hi)}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, ok := v.(json.Number)
		bits := t.Bits()
		if ok {
			if _, err := strconv.ParseUint(string(n), 10, bits); err == nil {
				return v, nil
			}
		}
		return nil, &bodyErr{path, fmt.Sprintf("must be a whole number from 0 to %d, written without a fraction or exponent", uint64(math.MaxUint64)>>(64-bits))}
	case reflect.Float32, reflect.Float64:
		if n, ok := v.(json.Number); ok {
			if _, err := strconv.ParseFloat(string(n), t.Bits()); err == nil {
				return v, nil
			}
		}
		return nil, &bodyErr{path, "must be a number within range"}
	case reflect.String:
		if _, ok := v.(string); !ok {
			return nil, &bodyErr{path, "must be a string"}
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			return nil, &bodyErr{path, "must be true or false"}
		}
	}
	return v, nil
}

// jsonFields collects the exact JSON member names of struct t (fields of
// untagged embedded structs included) with their types.
func jsonFields(t reflect.Type, into map[string]reflect.Type) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				jsonFields(ft, into)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		into[name] = f.Type
	}
}

// splitBodyErr undoes bodyErr's text: "body.index: msg" -> "index", "msg".
func splitBodyErr(msg string) (field, text string, ok bool) {
	rest, ok := strings.CutPrefix(msg, "body")
	if !ok || (!strings.HasPrefix(rest, ".") && !strings.HasPrefix(rest, "[")) {
		return "", "", false
	}
	field, text, ok = strings.Cut(rest, ": ")
	return strings.TrimPrefix(field, "."), text, ok
}
