module github.com/skiffkit/skiff

go 1.26.0
