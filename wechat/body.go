package wechat

import (
	"bytes"
	"encoding/json"
)

// marshalBody writes v as the JSON body of a call. WeChat reads string
// values as written and does not decode \u escapes, so the HTML escaping
// json.Marshal applies would turn a scene a=1&b=2 into a=1\u0026b=2,
// which WeChat refuses (40129), and a path's & into a code for another
// path. Strings go out as they are.
func marshalBody(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
