package deployment

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/utils/dump"
)

// TemplateHash is the pod-template-hash of a template: what names a
// Deployment's ReplicaSet (<deployment>-<hash>) and labels its pods. It is
// computed as Kubernetes computes it, so the same template (defaulted the
// same way, with the same k8s.io/api types) gets the same name: FNV-1a over
// the template printed with the hash printer of k8s.io/utils/dump, then the
// collision count as 8 little-endian bytes, as a decimal string encoded
// with the "safe" alphabet of rand.SafeEncodeString.
func TemplateHash(template *corev1.PodTemplateSpec, collisionCount *int32) string {
	h := fnv.New32a()
	fmt.Fprint(h, dump.ForHash(*template))
	if collisionCount != nil {
		b := make([]byte, 8)
		binary.LittleEndian.PutUint32(b, uint32(*collisionCount))
		h.Write(b)
	}
	return rand.SafeEncodeString(fmt.Sprint(h.Sum32()))
}
