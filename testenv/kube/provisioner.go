package main

// The node's volume provisioner: the default StorageClass of the test environment. It binds
// every claim of its class to a directory on the node, the way a cloud's CSI driver binds a
// claim to a disk, and removes the directory when the claim is released.
//
// kube-controller-manager's own host-path provisioner is not used because it makes each volume
// 0750 root:root, which the pods' non-root users (the restricted Pod Security Standard) cannot
// write; a hostPath volume ignores fsGroup. Here each volume is 0777, and one directory serves
// ReadWriteOnce and ReadWriteMany claims alike (there is one node).

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
)

const (
	provisionerName         = "tributary.dev/testenv-local"
	provisionedByAnnotation = "pv.kubernetes.io/provisioned-by"
	// Set on a claim by the PV controller once the claim's class names an external provisioner.
	storageProvisionerAnnotation = "volume.kubernetes.io/storage-provisioner"
)

func runLocalProvisioner(args []string) int {
	flags := flag.NewFlagSet("local-provisioner", flag.ContinueOnError)
	kubeconfig := flags.String("kubeconfig", "", "kubeconfig of the provisioner")
	root := flags.String("root", "", "directory that holds one subdirectory per volume")
	nodeName := flags.String("node-name", "", "the node the volumes live on")
	if err := flags.Parse(args); err != nil {
		return 2
	}
	if *kubeconfig == "" || *root == "" || *nodeName == "" {
		fmt.Fprintln(os.Stderr, "local-provisioner: --kubeconfig, --root and --node-name are required")
		return 2
	}
	config, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		fmt.Fprintf(os.Stderr, "local-provisioner: %v\n", err)
		return 1
	}
	client := kubernetes.NewForConfigOrDie(config)
	if err := os.MkdirAll(*root, 0o755); err != nil {
		fmt.Fprintf(os.Stderr, "local-provisioner: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	p := &localProvisioner{client: client, root: *root, nodeName: *nodeName}
	klog.Infof("provisioning claims of provisioner %s into %s", provisionerName, *root)
	// A poll of two lists a second is cheap on a one-node test cluster and needs no informer.
	ticker := time.NewTicker(time.Second)
	defer ticker.Stop()
	for {
		if err := p.provisionPending(ctx); err != nil {
			klog.Errorf("provisioning: %v", err)
		}
		if err := p.deleteReleased(ctx); err != nil {
			klog.Errorf("deleting released volumes: %v", err)
		}
		select {
		case <-ctx.Done():
			return 0
		case <-ticker.C:
		}
	}
}

type localProvisioner struct {
	client   kubernetes.Interface
	root     string
	nodeName string
}

func (p *localProvisioner) provisionPending(ctx context.Context) error {
	claims, err := p.client.CoreV1().PersistentVolumeClaims("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for i := range claims.Items {
		claim := &claims.Items[i]
		if claim.Spec.VolumeName != "" || claim.Status.Phase != corev1.ClaimPending ||
			claim.Annotations[storageProvisionerAnnotation] != provisionerName || claim.DeletionTimestamp != nil {
			continue
		}
		if err := p.provision(ctx, claim); err != nil {
			klog.Errorf("claim %s/%s: %v", claim.Namespace, claim.Name, err)
		}
	}
	return nil
}

func (p *localProvisioner) provision(ctx context.Context, claim *corev1.PersistentVolumeClaim) error {
	reclaim := corev1.PersistentVolumeReclaimDelete
	if claim.Spec.StorageClassName != nil {
		class, err := p.client.StorageV1().StorageClasses().Get(ctx, *claim.Spec.StorageClassName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if class.ReclaimPolicy != nil {
			reclaim = *class.ReclaimPolicy
		}
	}
	name := "pvc-" + string(claim.UID)
	dir := filepath.Join(p.root, name)
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return err
	}
	// MkdirAll applies the umask; the volume must be writable by any pod user.
	if err := os.Chmod(dir, 0o777); err != nil {
		return err
	}
	hostPathType := corev1.HostPathDirectory
	volume := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Annotations: map[string]string{provisionedByAnnotation: provisionerName},
		},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: claim.Spec.Resources.Requests[corev1.ResourceStorage]},
			AccessModes:                   claim.Spec.AccessModes,
			PersistentVolumeReclaimPolicy: reclaim,
			StorageClassName:              ptrValue(claim.Spec.StorageClassName),
			VolumeMode:                    claim.Spec.VolumeMode,
			ClaimRef: &corev1.ObjectReference{
				Kind: "PersistentVolumeClaim", APIVersion: "v1",
				Namespace: claim.Namespace, Name: claim.Name, UID: claim.UID,
			},
			PersistentVolumeSource: corev1.PersistentVolumeSource{
				HostPath: &corev1.HostPathVolumeSource{Path: dir, Type: &hostPathType},
			},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{
					Key: "kubernetes.io/hostname", Operator: corev1.NodeSelectorOpIn, Values: []string{p.nodeName},
				}}}},
			}},
		},
	}
	_, err := p.client.CoreV1().PersistentVolumes().Create(ctx, volume, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	if err == nil {
		klog.Infof("claim %s/%s bound to %s", claim.Namespace, claim.Name, dir)
	}
	return err
}

func (p *localProvisioner) deleteReleased(ctx context.Context) error {
	volumes, err := p.client.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for i := range volumes.Items {
		volume := &volumes.Items[i]
		if volume.Annotations[provisionedByAnnotation] != provisionerName ||
			volume.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimDelete ||
			(volume.Status.Phase != corev1.VolumeReleased && volume.Status.Phase != corev1.VolumeFailed) {
			continue
		}
		if volume.Spec.HostPath != nil && filepath.Dir(volume.Spec.HostPath.Path) == p.root {
			if err := os.RemoveAll(volume.Spec.HostPath.Path); err != nil {
				klog.Errorf("volume %s: %v", volume.Name, err)
				continue
			}
		}
		err := p.client.CoreV1().PersistentVolumes().Delete(ctx, volume.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			klog.Errorf("volume %s: %v", volume.Name, err)
			continue
		}
		klog.Infof("volume %s released and removed", volume.Name)
	}
	return nil
}

func ptrValue(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
