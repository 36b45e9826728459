package api

import (
	"encoding/base64"
	"fmt"
	"strings"
)

// selector is a parsed ListRequest.selector: every term must match.
type selector []selectorTerm

// selectorTerm matches labels where key is (or, with not, is not) value;
// with no value, where key is present (absent).
type selectorTerm struct {
	key, value string
	hasValue   bool
	not        bool
}

// parseSelector parses comma-separated terms key=value, key!=value, key
// and !key, as Kubernetes' equality-based label selectors; "" selects all.
func parseSelector(s string) (selector, error) {
	var sel selector
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	for _, raw := range strings.Split(s, ",") {
		term := strings.TrimSpace(raw)
		var t selectorTerm
		switch {
		case strings.Contains(term, "!="):
			t.key, t.value, _ = strings.Cut(term, "!=")
			t.hasValue, t.not = true, true
		case strings.Contains(term, "="):
			t.key, t.value, _ = strings.Cut(term, "=")
			t.hasValue = true
		case strings.HasPrefix(term, "!"):
			t.key, t.not = term[1:], true
		default:
			t.key = term
		}
		t.key, t.value = strings.TrimSpace(t.key), strings.TrimSpace(t.value)
		if t.key == "" || strings.ContainsAny(t.key, "!= ") || strings.ContainsAny(t.value, "!= ") {
			return nil, fmt.Errorf("selector: term %q: want key=value, key!=value, key or !key", term)
		}
		sel = append(sel, t)
	}
	return sel, nil
}

// matches reports whether labels satisfy every term.
func (sel selector) matches(labels map[string]string) bool {
	for _, t := range sel {
		v, ok := labels[t.key]
		if t.hasValue {
			ok = ok && v == t.value
		}
		if ok == t.not {
			return false
		}
	}
	return true
}

// Page tokens are the last name a page held, so the next one starts after
// it; encoded so that clients treat them as opaque.
func pageToken(lastName string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(lastName))
}

func parsePageToken(tok string) (string, error) {
	name, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || (tok != "" && len(name) == 0) {
		return "", fmt.Errorf("page_token %q: not a next_page_token of a listing", tok)
	}
	return string(name), nil
}
