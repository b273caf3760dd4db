package alias

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// maxMethods bounds the methods of any one type of the plugin: a type with
// more does more than one job (solver.Resolver had 25: its cache, budgets,
// views, referral walking and the authoritative wait).
const maxMethods = 20

// TestNoTypeHasTooManyMethods counts the methods declared on each type
// across the module's non-test Go files (the nested lab module excluded)
// and fails on any type with more than maxMethods.
func TestNoTypeHasTooManyMethods(t *testing.T) {
	t.Parallel() // it only reads the sources
	counts, err := methodCounts(".")
	if err != nil {
		t.Fatal(err)
	}
	if counts["solver.Resolver"] == 0 {
		t.Fatalf("no methods found for solver.Resolver among %d types: the walk missed the module", len(counts))
	}
	for typ, n := range counts {
		if n > maxMethods {
			t.Errorf("%s has %d methods, more than %d: split it by job", typ, n, maxMethods)
		}
	}
}

// methodCounts returns the number of methods per type ("dir.Type", the
// root package's as "alias.Type") in the non-test Go files under root,
// skipping nested modules and testdata.
func methodCounts(root string) (map[string]int, error) {
	counts := map[string]int{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path == root {
				return nil
			}
			if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil || d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Recv == nil || len(fn.Recv.List) == 0 {
				continue
			}
			if name := receiverType(fn.Recv.List[0].Type); name != "" {
				pkg := filepath.ToSlash(filepath.Dir(path))
				if pkg == "." {
					pkg = f.Name.Name
				}
				counts[pkg+"."+name]++
			}
		}
		return nil
	})
	return counts, err
}

// receiverType is the name of the type of a method's receiver: T, *T,
// T[P] or *T[P, Q].
func receiverType(expr ast.Expr) string {
	for {
		switch e := expr.(type) {
		case *ast.StarExpr:
			expr = e.X
		case *ast.IndexExpr:
			expr = e.X
		case *ast.IndexListExpr:
			expr = e.X
		case *ast.ParenExpr:
			expr = e.X
		case *ast.Ident:
			return e.Name
		default:
			return ""
		}
	}
}
