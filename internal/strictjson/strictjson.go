// Package strictjson decodes JSON that must hold exactly one value of a
// known shape: files and registry data where an unknown field is a typo or
// an attack, never something to ignore (signature policies, signature
// payloads). It touches nothing.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
)

// Unmarshal decodes data into v, refusing unknown fields and anything after
// the first JSON value.
func Unmarshal(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("data after the JSON value")
	}
	return nil
}
