module github.com/skiffkit/skiff/bench

go 1.26.0

require github.com/skiffkit/skiff v0.0.0

replace github.com/skiffkit/skiff => ../
