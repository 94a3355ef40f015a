package memory_test

import (
	"testing"

	"github.com/headway/headway/internal/storage"
	"github.com/headway/headway/internal/storage/memory"
	"github.com/headway/headway/internal/storage/storagetest"
)

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Interface { return memory.New() })
}
