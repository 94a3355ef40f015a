package app

import (
	"log/slog"

	"github.com/headway/headway/internal/apiserver/admission"
	"github.com/headway/headway/internal/apiserver/admission/limitranger"
	"github.com/headway/headway/internal/apiserver/admission/priority"
	"github.com/headway/headway/internal/apiserver/admission/resourcequota"
	"github.com/headway/headway/internal/apiserver/admission/tolerationseconds"
	"github.com/headway/headway/internal/apiserver/admission/webhook"
)

// admissionChain is the API server's admission, in kube-apiserver's order:
// the mutating steps run in this order, then the validating ones, quota
// last (it charges only what everything else accepted).
func admissionChain(cfg Config, log *slog.Logger) admission.Chain {
	hooks := webhook.Options{Log: log.With("component", "admission-webhook")}
	return admission.Chain{
		limitranger.New(),
		priority.New(),
		tolerationseconds.New(cfg.DefaultNotReadyTolerationSeconds, cfg.DefaultUnreachableTolerationSeconds),
		webhook.NewMutating(hooks),
		webhook.NewValidating(hooks),
		resourcequota.New(),
	}
}
