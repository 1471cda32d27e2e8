// Command tributary-kube is the cluster of Tributary's test environment: one binary, built
// from the Kubernetes and etcd Go modules, that runs etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler, kubelet, kube-proxy, the node's volume provisioner
// or kubectl depending on its first argument or on the name it was started by (the way k3s
// packs them, but each still its own process, so a test can stop one and not the others).
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"go.etcd.io/etcd/server/v3/etcdmain"
	"k8s.io/component-base/cli"
	kubectl "k8s.io/kubectl/pkg/cmd"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	proxy "k8s.io/kubernetes/cmd/kube-proxy/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"
)

const roles = "etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy, local-provisioner or kubectl"

func main() {
	role, args := filepath.Base(os.Args[0]), os.Args[1:]
	if role == "tributary-kube" {
		if len(args) == 0 {
			fmt.Fprintf(os.Stderr, "usage: tributary-kube ROLE [flags]  (ROLE: %s)\n", roles)
			os.Exit(2)
		}
		role, args = args[0], args[1:]
	}
	// Each Kubernetes component is its own cobra command, run the way its own main runs it.
	components := map[string]func() *cobra.Command{
		"kube-apiserver":          apiserver.NewAPIServerCommand,
		"kube-controller-manager": controllermanager.NewControllerManagerCommand,
		"kube-scheduler":          func() *cobra.Command { return scheduler.NewSchedulerCommand() },
		"kubelet":                 func() *cobra.Command { return kubelet.NewKubeletCommand(context.Background()) },
		"kube-proxy":              proxy.NewProxyCommand,
	}
	switch role {
	case "etcd":
		etcdmain.Main(append([]string{"etcd"}, args...))
	case "local-provisioner":
		os.Exit(runLocalProvisioner(args))
	case "kubectl":
		cmd := kubectl.NewDefaultKubectlCommand()
		cmd.SetArgs(args)
		if err := cli.RunNoErrOutput(cmd); err != nil {
			cmdutil.CheckErr(err)
		}
	default:
		newCommand, known := components[role]
		if !known {
			fmt.Fprintf(os.Stderr, "tributary-kube: unknown role %q (want %s)\n", role, roles)
			os.Exit(2)
		}
		cmd := newCommand()
		cmd.SetArgs(args)
		os.Exit(cli.Run(cmd))
	}
}
