package client

import "github.com/skiffkit/skiff/cache"

// PartitionedInformerFor is InformerFor whose informer holds only the
// partition p of T's objects (see cache.Partition): replicas that share
// work (package shard) each cache their own part. It must be the first
// informer of T the client makes; Get and List of T then read the
// partition, so an object outside it reads as not found, and InformerFor[T]
// with the same scope returns this informer. The informer lists in pages
// (no streaming watch-list), which a Partition needs to know when its list
// is stored.
func PartitionedInformerFor[T Object](c *Client, scope cache.Scope, p *cache.Partition) (*cache.Informer[T], error) {
	return informerFor[T](c, scope, p, informerOptions{})
}
