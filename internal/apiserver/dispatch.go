package apiserver

// Dispatch of a resource request to its handler by verb and subresource.

import "net/http"

// serve dispatches a resource request by verb and subresource.
func (res *resource) serve(w http.ResponseWriter, r *http.Request, info requestInfo) {
	if res.reg.CreateOnly != nil {
		if err := res.serveCreateOnly(w, r, info); err != nil {
			res.s.writeError(w, r, err)
		}
		return
	}
	var err error
	switch info.Subresource {
	case "":
		switch info.Verb {
		case "get":
			err = res.handleGet(w, r, info)
		case "list":
			err = res.handleList(w, r, info)
		case "watch":
			err = res.handleWatch(w, r, info)
		case "create":
			if info.Name != "" {
				err = methodNotSupported(res.reg.GroupResource(), "create")
				break
			}
			err = res.handleCreate(w, r, info)
		case "update":
			err = res.handleUpdate(w, r, info)
		case "patch":
			err = res.handlePatch(w, r, info)
		case "delete":
			err = res.handleDelete(w, r, info)
		case "deletecollection":
			err = res.handleDeleteCollection(w, r, info)
		default:
			err = methodNotSupported(res.reg.GroupResource(), info.Verb)
		}
	case "status":
		if !res.reg.HasStatus {
			err = notFoundResource()
			break
		}
		switch info.Verb {
		case "get":
			err = res.handleGet(w, r, info)
		case "update":
			err = res.handleUpdate(w, r, info)
		case "patch":
			err = res.handlePatch(w, r, info)
		default:
			err = methodNotSupported(res.reg.GroupResource(), info.Verb)
		}
	case "scale":
		if res.reg.Scale == nil {
			err = notFoundResource()
			break
		}
		err = res.handleScale(w, r, info)
	case "finalize":
		if res.reg.Finalize == nil || info.Verb != "update" {
			err = notFoundResource()
			break
		}
		err = res.handleUpdate(w, r, info)
	case "log", "exec", "attach", "portforward":
		if !res.reg.Streams {
			err = notFoundResource()
			break
		}
		err = res.handleStream(w, r, info)
	case "binding":
		if res.reg.Bind == nil || info.Verb != "create" {
			err = notFoundResource()
			break
		}
		err = res.handleBinding(w, r, info)
	case "token":
		if res.reg.Token == nil || info.Verb != "create" {
			err = notFoundResource()
			break
		}
		err = res.handleToken(w, r, info)
	case "eviction":
		if !res.reg.Evict || info.Verb != "create" {
			err = notFoundResource()
			break
		}
		err = res.handleEviction(w, r, info)
	default:
		err = notFoundResource()
	}
	if err != nil {
		res.s.writeError(w, r, err)
	}
}
