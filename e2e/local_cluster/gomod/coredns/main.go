// Wrapper module: CoreDNS from github.com/coredns/coredns with only the plugins the local cluster's
// Corefile uses (components.py), so a cold build compiles a fraction of its plugins' dependencies.
package main

import (
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/ready"
)

func main() { coremain.Run() }
