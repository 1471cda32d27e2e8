// Command tributary-kube is the control plane of Tributary's test environment: one binary,
// built from the Kubernetes and etcd Go modules, that runs etcd, kube-apiserver,
// kube-controller-manager or kubectl depending on its first argument or on the name it was
// started by (the way k3s packs them, but each still its own process, so a test can stop one
// and not the others).
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"go.etcd.io/etcd/server/v3/etcdmain"
	"k8s.io/component-base/cli"
	kubectl "k8s.io/kubectl/pkg/cmd"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

const roles = "etcd, kube-apiserver, kube-controller-manager or kubectl"

func main() {
	role, args := filepath.Base(os.Args[0]), os.Args[1:]
	if role == "tributary-kube" {
		if len(args) == 0 {
			fmt.Fprintf(os.Stderr, "usage: tributary-kube ROLE [flags]  (ROLE: %s)\n", roles)
			os.Exit(2)
		}
		role, args = args[0], args[1:]
	}
	switch role {
	case "etcd":
		etcdmain.Main(append([]string{"etcd"}, args...))
	case "kube-apiserver":
		cmd := apiserver.NewAPIServerCommand()
		cmd.SetArgs(args)
		os.Exit(cli.Run(cmd))
	case "kube-controller-manager":
		cmd := controllermanager.NewControllerManagerCommand()
		cmd.SetArgs(args)
		os.Exit(cli.Run(cmd))
	case "kubectl":
		cmd := kubectl.NewDefaultKubectlCommand()
		cmd.SetArgs(args)
		if err := cli.RunNoErrOutput(cmd); err != nil {
			cmdutil.CheckErr(err)
		}
	default:
		fmt.Fprintf(os.Stderr, "tributary-kube: unknown role %q (want %s)\n", role, roles)
		os.Exit(2)
	}
}
