package framework

import (
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"
)

// HTTPGet GETs url until it answers 200 and returns the body, failing the
// test after timeout (a server in a pod that is still starting refuses
// connections at first).
func HTTPGet(t testing.TB, url string, timeout time.Duration) string {
	t.Helper()
	c := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	for {
		resp, err := c.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return string(b)
			}
			err = fmt.Errorf("%s", resp.Status)
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %v", url, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
