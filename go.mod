module github.com/skiffkit/skiff

go 1.26.0

require (
	github.com/prometheus/client_golang v1.23.2 // indirect
	golang.org/x/time v0.14.0 // indirect
)
