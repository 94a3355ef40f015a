package app

import (
	"github.com/headway/headway/internal/apiserver/admission"
	"github.com/headway/headway/internal/apiserver/admission/limitranger"
	"github.com/headway/headway/internal/apiserver/admission/resourcequota"
)

// admissionChain is the API server's admission, in kube-apiserver's order:
// mutating steps run in this order, then validating ones, quota last.
func admissionChain() admission.Chain {
	return admission.Chain{
		limitranger.New(),
		resourcequota.New(),
	}
}
