package client

import "reflect"

// HasLeanDecoder reports whether c built a lean REST client (managedFields
// and last-applied cut before decoding) for the informers of typ.
func HasLeanDecoder(c *Client, typ reflect.Type) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.leanRest[typ] != nil
}
