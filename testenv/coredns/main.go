// Command coredns is the cluster DNS of Tributary's test environment: CoreDNS with only the
// plugins a one-node test cluster uses, so the build carries none of the cloud back ends.
// Pods resolve <service>.<namespace>.svc.cluster.local and the per-pod names of headless
// Services (a StatefulSet's <pod>.<service>); every other name does not exist (NXDOMAIN, as an
// upstream resolver would answer for an unknown name), since nothing outside this machine may
// be reached.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/template"
	"github.com/coredns/coredns/coremain"
)

// The plugins above in the order CoreDNS's own plugin.cfg runs them.
var directives = []string{"bind", "ready", "health", "errors", "cache", "template", "kubernetes"}

func init() {
	dnsserver.Directives = directives
}

func main() {
	coremain.Run()
}
