package client

// InstallTracing exposes installTracing to the tests until client.New
// takes Options.TracerProvider.
var InstallTracing = installTracing
