// Package builtinschema holds the structured-merge-diff schemas of the
// built-in types (server-side apply and managedFields tracking): client-go's
// of the Kubernetes types and apiextensions-apiserver's of
// CustomResourceDefinition, generated from the YAML those modules embed
// (gen.go) as static data. Parsing that YAML, as the upstream packages do on
// first use, was half of a server start's CPU (bench/results-apiserver.md).
package builtinschema

import (
	"sync"

	"sigs.k8s.io/structured-merge-diff/v6/typed"
)

//go:generate go run gen.go

// Core is client-go's schema of the Kubernetes types, as
// k8s.io/client-go/applyconfigurations.NewTypeConverter uses it.
func Core() *typed.Parser {
	mapDefaults()
	return &core
}

// APIExtensions is apiextensions-apiserver's schema of
// CustomResourceDefinition, as
// k8s.io/apiextensions-apiserver/pkg/client/applyconfiguration.NewTypeConverter
// uses it.
func APIExtensions() *typed.Parser {
	mapDefaults()
	return &apiExtensions
}

// mapDefaults completes both schemas once: the defaults that are maps are
// made at run time.
var mapDefaults = sync.OnceFunc(setMapDefaults)
