package deploy_test

// Static checks of the deployment files. CI cannot run docker, compose, a
// cluster or systemd, so these tests check what can be checked without
// them: the files parse, they agree with each other (ports, paths, volume
// and secret names, the variables each gateway.yaml references) and every
// gateway.yaml loads with the gateway's own loader.
//
//	go test ./deploy -run TestKubernetesPartners -update
//
// rewrites kubernetes/base/partners.yaml from deploy/examples/partners.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/goccy/go-yaml"

	"github.com/edigw/edigw/gateway"
	"github.com/edigw/edigw/partners"
)

var update = flag.Bool("update", false, "rewrite kubernetes/base/partners.yaml from deploy/examples/partners")

// repoRoot is the repository root, relative to this package's directory
// (where `go test` runs); the Docker build context.
const repoRoot = ".."

// Paths used by the image, the compose file and the manifests.
const (
	dataDir      = "/var/lib/edigw"
	imageConfig  = "/etc/edigw/gateway.yaml"
	binaryPath   = "/usr/local/bin/edigw"
	examplesDir  = "deploy/examples/partners" // relative to repoRoot
	sftpPort     = 2022
	httpPort     = 8080
	minStopGrace = 60 * time.Second
)

// ---------------------------------------------------------------------------
// Dockerfile

// instruction is one Dockerfile instruction after continuation lines are
// joined and comments dropped.
type instruction struct {
	Line  int                 // line of its first physical line
	Cmd   string              // upper case: FROM, COPY, ...
	Flags map[string][]string // leading --name=value options (FROM, COPY, ADD, RUN)
	Args  []string            // JSON array form, or the rest split on white space
	JSON  bool                // Args came from the exec (JSON array) form
	Raw   string              // everything after the command, flags included
}

func (in instruction) String() string {
	return fmt.Sprintf("Dockerfile:%d: %s %s", in.Line, in.Cmd, in.Raw)
}

var dockerInstructions = map[string]bool{
	"FROM": true, "RUN": true, "CMD": true, "LABEL": true, "MAINTAINER": true, "EXPOSE": true, "ENV": true,
	"ADD": true, "COPY": true, "ENTRYPOINT": true, "VOLUME": true, "USER": true, "WORKDIR": true, "ARG": true,
	"ONBUILD": true, "STOPSIGNAL": true, "HEALTHCHECK": true, "SHELL": true,
}

// parseDockerfile is a small line-based Dockerfile parser: comment lines
// (also inside continuations) and blank lines are dropped, lines ending in
// a backslash continue on the next line. Heredocs and a non-default escape
// character are refused rather than misread.
func parseDockerfile(src string) ([]instruction, error) {
	var out []instruction
	var cur strings.Builder
	start := 0
	lines := strings.Split(src, "\n")
	for i, line := range lines {
		n := i + 1
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") {
			if m := regexp.MustCompile(`^#\s*escape\s*=\s*(\S)`).FindStringSubmatch(trimmed); m != nil && m[1] != `\` && len(out) == 0 {
				return nil, fmt.Errorf("Dockerfile:%d: escape character %q is not supported by this parser", n, m[1])
			}
			continue
		}
		if trimmed == "" {
			continue
		}
		if cur.Len() == 0 {
			start = n
		}
		right := strings.TrimRight(line, " \t\r")
		if strings.HasSuffix(right, `\`) {
			cur.WriteString(strings.TrimSuffix(right, `\`))
			cur.WriteByte(' ')
			continue
		}
		cur.WriteString(right)
		in, err := parseInstruction(start, cur.String())
		if err != nil {
			return nil, err
		}
		out = append(out, in)
		cur.Reset()
	}
	if cur.Len() > 0 {
		return nil, fmt.Errorf("Dockerfile:%d: the last instruction ends with a line continuation", start)
	}
	return out, nil
}

func parseInstruction(line int, s string) (instruction, error) {
	s = strings.TrimSpace(s)
	cmd, rest, _ := strings.Cut(s, " ")
	in := instruction{Line: line, Cmd: strings.ToUpper(cmd), Flags: map[string][]string{}, Raw: strings.TrimSpace(rest)}
	if !dockerInstructions[in.Cmd] {
		return in, fmt.Errorf("Dockerfile:%d: unknown instruction %q", line, cmd)
	}
	rest = strings.TrimSpace(rest)
	switch in.Cmd {
	case "FROM", "COPY", "ADD", "RUN":
		for strings.HasPrefix(rest, "--") {
			tok, more, _ := strings.Cut(rest, " ")
			name, value, _ := strings.Cut(strings.TrimPrefix(tok, "--"), "=")
			in.Flags[name] = append(in.Flags[name], value)
			rest = strings.TrimSpace(more)
		}
	}
	if (in.Cmd == "RUN" || in.Cmd == "COPY" || in.Cmd == "ADD") && strings.Contains(rest, "<<") {
		return in, fmt.Errorf("Dockerfile:%d: %s with a heredoc is not supported by this parser", line, in.Cmd)
	}
	if strings.HasPrefix(rest, "[") {
		if err := json.Unmarshal([]byte(rest), &in.Args); err != nil {
			return in, fmt.Errorf("Dockerfile:%d: %s: exec form is not a JSON array of strings: %v", line, in.Cmd, err)
		}
		in.JSON = true
	} else {
		in.Args = strings.Fields(rest)
	}
	return in, nil
}

// stage is one FROM ... and the instructions up to the next FROM.
type stage struct {
	From  instruction
	Image string
	Name  string
	Body  []instruction
}

func stages(ins []instruction) []stage {
	var out []stage
	for _, in := range ins {
		if in.Cmd == "FROM" {
			st := stage{From: in}
			if len(in.Args) > 0 {
				st.Image = in.Args[0]
			}
			if len(in.Args) == 3 && strings.EqualFold(in.Args[1], "AS") {
				st.Name = in.Args[2]
			}
			out = append(out, st)
			continue
		}
		if len(out) > 0 {
			out[len(out)-1].Body = append(out[len(out)-1].Body, in)
		}
	}
	return out
}

func last(st stage, cmd string) (instruction, bool) {
	for i := len(st.Body) - 1; i >= 0; i-- {
		if st.Body[i].Cmd == cmd {
			return st.Body[i], true
		}
	}
	return instruction{}, false
}

// copySrcDest splits a COPY/ADD into its sources and destination.
func copySrcDest(in instruction) ([]string, string) {
	if len(in.Args) < 2 {
		return nil, ""
	}
	return in.Args[:len(in.Args)-1], in.Args[len(in.Args)-1]
}

// dockerignore reads deploy/Dockerfile.dockerignore (BuildKit's
// per-Dockerfile ignore file) as patterns relative to the context root.
func dockerignore(t *testing.T) []*regexp.Regexp {
	t.Helper()
	data, err := os.ReadFile("Dockerfile.dockerignore")
	if err != nil {
		t.Fatalf("deploy/Dockerfile.dockerignore: %v (it keeps bin/, data/ and .git out of the build context)", err)
	}
	var out []*regexp.Regexp
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "!") {
			t.Fatalf("deploy/Dockerfile.dockerignore: exceptions (%q) are not supported by this test", line)
		}
		p := path.Clean(strings.TrimPrefix(line, "/"))
		var re strings.Builder
		re.WriteString("^")
		for i := 0; i < len(p); i++ {
			switch c := p[i]; {
			case strings.HasPrefix(p[i:], "**/"):
				re.WriteString("(.*/)?")
				i += 2
			case strings.HasPrefix(p[i:], "**"):
				re.WriteString(".*")
				i++
			case c == '*':
				re.WriteString("[^/]*")
			case c == '?':
				re.WriteString("[^/]")
			default:
				re.WriteString(regexp.QuoteMeta(string(c)))
			}
		}
		re.WriteString("(/.*)?$") // a directory excludes everything below it
		out = append(out, regexp.MustCompile(re.String()))
	}
	return out
}

func ignored(patterns []*regexp.Regexp, p string) bool {
	for _, re := range patterns {
		if re.MatchString(p) {
			return true
		}
	}
	return false
}

func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	ins, err := parseDockerfile(string(data))
	if err != nil {
		t.Fatal(err)
	}
	sts := stages(ins)
	if len(sts) < 2 {
		t.Fatalf("Dockerfile: %d FROM stage(s), want a build stage and a runtime stage", len(sts))
	}
	names := map[string]bool{}
	for _, st := range sts {
		if st.Name != "" {
			names[st.Name] = true
		}
	}

	// Build stage: a static Go binary of ./cmd/edigw.
	build := sts[0]
	if build.Image != "golang:1.26-bookworm" {
		t.Errorf("%v: build stage image is %q, want golang:1.26-bookworm", build.From, build.Image)
	}
	var goBuild *instruction
	cgoOff := false
	for i, in := range build.Body {
		if in.Cmd == "ENV" && regexp.MustCompile(`(^|\s)CGO_ENABLED=0(\s|$)`).MatchString(in.Raw) {
			cgoOff = true
		}
		if in.Cmd == "RUN" && strings.Contains(in.Raw, "go build") {
			goBuild = &build.Body[i]
		}
	}
	if goBuild == nil {
		t.Fatalf("Dockerfile: build stage %q has no RUN ... go build", build.Name)
	}
	if strings.Contains(goBuild.Raw, "CGO_ENABLED=0") {
		cgoOff = true
	}
	if !cgoOff {
		t.Errorf("Dockerfile: build stage does not set CGO_ENABLED=0 (ENV or on the go build line)")
	}
	for _, want := range []string{"-trimpath", `-ldflags "-s -w"`, "./cmd/edigw"} {
		if !strings.Contains(goBuild.Raw, want) {
			t.Errorf("%v: missing %s", *goBuild, want)
		}
	}

	// Runtime stage.
	final := sts[len(sts)-1]
	const distroless = "gcr.io/distroless/static-debian12:nonroot"
	user, hasUser := last(final, "USER")
	switch {
	case hasUser:
		u, _, _ := strings.Cut(strings.Join(user.Args, " "), ":")
		if u == "root" || u == "0" || u == "" {
			t.Errorf("%v: the image runs as root", user)
		} else if u != "65532" && !(u == "nonroot" && final.Image == distroless) {
			t.Errorf("%v: want uid 65532 (distroless nonroot)", user)
		}
	case final.Image != distroless && !strings.HasSuffix(final.Image, ":nonroot"):
		t.Errorf("%v: runtime stage has no USER and its base is not a :nonroot image: it would run as root", final.From)
	}
	if wd, ok := last(final, "WORKDIR"); !ok || strings.Join(wd.Args, " ") != dataDir {
		t.Errorf("Dockerfile: runtime WORKDIR is %q, want %s", strings.Join(wd.Args, " "), dataDir)
	}
	exposed := map[string]bool{}
	for _, in := range final.Body {
		if in.Cmd == "EXPOSE" {
			for _, p := range in.Args {
				exposed[strings.TrimSuffix(p, "/tcp")] = true
			}
		}
	}
	for _, p := range []int{sftpPort, httpPort} {
		if !exposed[strconv.Itoa(p)] {
			t.Errorf("Dockerfile: runtime stage does not EXPOSE %d", p)
		}
	}
	ep, ok := last(final, "ENTRYPOINT")
	if !ok || !ep.JSON || !slices.Equal(ep.Args, []string{binaryPath}) {
		t.Errorf("Dockerfile: ENTRYPOINT is %q (exec form: %v), want [%q]", ep.Args, ep.JSON, binaryPath)
	}
	cmd, ok := last(final, "CMD")
	wantCmd := []string{"serve", "--config", imageConfig}
	if !ok || !cmd.JSON || !slices.Equal(cmd.Args, wantCmd) {
		t.Errorf("Dockerfile: CMD is %q (exec form: %v), want %q", cmd.Args, cmd.JSON, wantCmd)
	}

	// Every COPY: --from names an earlier stage; sources from the build
	// context exist in the repository and are not excluded by the ignore file.
	ignore := dockerignore(t)
	for _, need := range []string{"go.mod", "go.sum", "cmd/edigw/main.go"} {
		if ignored(ignore, need) {
			t.Errorf("deploy/Dockerfile.dockerignore excludes %s, which the build needs", need)
		}
	}
	copied := map[string]string{} // destination in the runtime image -> source in the repository
	binaryCopied := false
	for si, st := range sts {
		for _, in := range st.Body {
			if in.Cmd != "COPY" && in.Cmd != "ADD" {
				continue
			}
			srcs, dest := copySrcDest(in)
			if len(srcs) == 0 {
				t.Errorf("%v: needs a source and a destination", in)
				continue
			}
			if from, ok := in.Flags["from"]; ok {
				if !names[from[0]] {
					t.Errorf("%v: --from=%s is not a stage of this Dockerfile", in, from[0])
				}
				if si == len(sts)-1 && dest == binaryPath {
					binaryCopied = true
				}
				continue
			}
			for _, src := range srcs {
				if strings.Contains(src, "://") {
					t.Errorf("%v: remote source %s: copy from the repository", in, src)
					continue
				}
				clean := path.Clean(src)
				if path.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, "../") {
					t.Errorf("%v: source %s is outside the build context (the repository root)", in, src)
					continue
				}
				matches, err := filepath.Glob(filepath.Join(repoRoot, filepath.FromSlash(clean)))
				if err != nil || len(matches) == 0 {
					t.Errorf("%v: source %s does not exist in the repository (paths are relative to the repository root, the build context)", in, src)
					continue
				}
				if clean != "." && ignored(ignore, clean) {
					t.Errorf("%v: source %s is excluded by deploy/Dockerfile.dockerignore", in, src)
				}
				if si == len(sts)-1 {
					copied[path.Clean(dest)] = clean
				}
			}
		}
	}
	if !binaryCopied {
		t.Errorf("Dockerfile: the runtime stage does not COPY --from=<build stage> the binary to %s", binaryPath)
	}

	// The configuration the image runs with: deploy/docker/gateway.yaml.
	src, ok := copied[imageConfig]
	if !ok {
		t.Fatalf("Dockerfile: nothing is copied to %s (the CMD's --config)", imageConfig)
	}
	if src != "deploy/docker/gateway.yaml" {
		t.Errorf("Dockerfile: %s comes from %s, want deploy/docker/gateway.yaml", imageConfig, src)
	}
	cfg := loadConfig(t, filepath.Join(repoRoot, src))
	if cfg.DataDir != dataDir {
		t.Errorf("%s: data_dir is %q, want %s (the image's WORKDIR and volume)", src, cfg.DataDir, dataDir)
	}
	psrc, ok := copied[path.Clean(cfg.Partners)]
	if !ok {
		t.Errorf("%s: partners: %s, but the Dockerfile copies nothing there (copied: %v)", src, cfg.Partners, keys(copied))
	} else {
		if psrc != examplesDir {
			t.Errorf("Dockerfile: %s comes from %s, want %s", cfg.Partners, psrc, examplesDir)
		}
		if st, err := os.Stat(filepath.Join(repoRoot, psrc)); err != nil || !st.IsDir() {
			t.Errorf("Dockerfile: %s (copied to the partners path %s) is not a folder", psrc, cfg.Partners)
		} else if _, err := partners.LoadDir(filepath.Join(repoRoot, psrc)); err != nil {
			t.Errorf("%s, copied to %s, does not load:\n%v", psrc, cfg.Partners, err)
		}
	}
	checkListen(t, src+": sftp.listen", cfg.SFTP.Listen, sftpPort)
	checkHTTPListen(t, src, cfg)
	if !strings.HasPrefix(cfg.SFTP.HostKeyDir, dataDir+"/") {
		t.Errorf("%s: sftp.host_key_dir %s is not on the volume %s: the host key would change with every container", src, cfg.SFTP.HostKeyDir, dataDir)
	}
}

// ---------------------------------------------------------------------------
// gateway.yaml helpers

func loadConfig(t *testing.T, file string) *gateway.Config {
	t.Helper()
	cfg, err := gateway.LoadConfig(file)
	if err != nil {
		t.Fatalf("gateway.LoadConfig: %v", err)
	}
	return cfg
}

func loadConfigData(t *testing.T, name, data string) *gateway.Config {
	t.Helper()
	file := filepath.Join(t.TempDir(), "gateway.yaml")
	if err := os.WriteFile(file, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := gateway.LoadConfig(file)
	if err != nil {
		t.Fatalf("%s does not load: %v", name, err)
	}
	return cfg
}

// envRefs lists the environment variables a configuration references: the
// value of every string field whose yaml key ends in "_env", found by
// reflection so that settings added later are covered too.
func envRefs(cfg *gateway.Config) []string {
	set := map[string]bool{}
	var walk func(v reflect.Value)
	walk = func(v reflect.Value) {
		switch v.Kind() {
		case reflect.Pointer, reflect.Interface:
			if !v.IsNil() {
				walk(v.Elem())
			}
		case reflect.Struct:
			for i := 0; i < v.NumField(); i++ {
				f := v.Type().Field(i)
				tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
				if f.Type.Kind() == reflect.String && strings.HasSuffix(tag, "_env") {
					if s := v.Field(i).String(); s != "" {
						set[s] = true
					}
					continue
				}
				if f.IsExported() {
					walk(v.Field(i))
				}
			}
		case reflect.Slice, reflect.Array:
			for i := 0; i < v.Len(); i++ {
				walk(v.Index(i))
			}
		case reflect.Map:
			for _, k := range v.MapKeys() {
				walk(v.MapIndex(k))
			}
		}
	}
	walk(reflect.ValueOf(cfg))
	return keys(set)
}

func checkListen(t *testing.T, what, addr string, port int) {
	t.Helper()
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Errorf("%s %q: %v", what, addr, err)
		return
	}
	if p != strconv.Itoa(port) {
		t.Errorf("%s is %q: port %s, want %d (what the image exposes and the manifests publish)", what, addr, p, port)
	}
	if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
		t.Errorf("%s is %q: a loopback address cannot be reached from outside the container", what, addr)
	}
}

// checkHTTPListen checks http.listen when the gateway has that setting (the
// HTTP API is being added; until then there is nothing to check).
func checkHTTPListen(t *testing.T, name string, cfg *gateway.Config) {
	t.Helper()
	h := reflect.ValueOf(cfg).Elem().FieldByName("HTTP")
	if !h.IsValid() || h.Kind() != reflect.Struct {
		t.Logf("%s: gateway.Config has no HTTP settings yet; http.listen not checked", name)
		return
	}
	l := h.FieldByName("Listen")
	if !l.IsValid() || l.Kind() != reflect.String {
		t.Logf("%s: gateway.Config.HTTP has no Listen; not checked", name)
		return
	}
	checkListen(t, name+": http.listen", l.String(), httpPort)
}

// ---------------------------------------------------------------------------
// compose.yaml

type composeFile struct {
	Name     string                    `yaml:"name"`
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image string `yaml:"image"`
	Build *struct {
		Context    string `yaml:"context"`
		Dockerfile string `yaml:"dockerfile"`
	} `yaml:"build"`
	Entrypoint      []string          `yaml:"entrypoint"`
	Command         []string          `yaml:"command"`
	Ports           []string          `yaml:"ports"`
	Volumes         []string          `yaml:"volumes"`
	Environment     map[string]string `yaml:"environment"`
	Profiles        []string          `yaml:"profiles"`
	ReadOnly        bool              `yaml:"read_only"`
	Tmpfs           []string          `yaml:"tmpfs"`
	CapDrop         []string          `yaml:"cap_drop"`
	StopGracePeriod string            `yaml:"stop_grace_period"`
	Healthcheck     *struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
	DependsOn map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
}

// composeVar is the variable a compose value interpolates: "${NAME...}".
var composeVar = regexp.MustCompile(`^\$\{([A-Za-z_][A-Za-z0-9_]*)`)

func TestCompose(t *testing.T) {
	data, err := os.ReadFile("compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	if err := yaml.Unmarshal(data, &c); err != nil {
		t.Fatalf("compose.yaml: %s", yaml.FormatError(err, false, true))
	}
	for _, name := range []string{"edigw", "s3", "postgres"} {
		if _, ok := c.Services[name]; !ok {
			t.Errorf("compose.yaml: no service %q", name)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	gw, s3, pg := c.Services["edigw"], c.Services["s3"], c.Services["postgres"]

	// edigw is built from deploy/Dockerfile with the repository root as context.
	if gw.Build == nil {
		t.Errorf("compose.yaml: services.edigw has no build")
	} else {
		ctx := filepath.Clean(gw.Build.Context) // relative to deploy/, where compose.yaml is
		if abs, _ := filepath.Abs(ctx); abs != mustAbs(t, repoRoot) {
			t.Errorf("compose.yaml: services.edigw.build.context is %q (%s), want the repository root (..)", gw.Build.Context, abs)
		}
		if df := filepath.Join(ctx, filepath.FromSlash(gw.Build.Dockerfile)); mustAbs(t, df) != mustAbs(t, "Dockerfile") {
			t.Errorf("compose.yaml: services.edigw.build.dockerfile is %q (relative to the context), want deploy/Dockerfile", gw.Build.Dockerfile)
		}
	}

	// Published ports: loopback only, and edigw publishes SFTP and HTTP.
	for name, s := range c.Services {
		for _, p := range s.Ports {
			if !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("compose.yaml: services.%s.ports %q is not bound to 127.0.0.1", name, p)
			}
		}
	}
	published := map[string]bool{}
	for _, p := range gw.Ports {
		parts := strings.Split(p, ":")
		published[parts[len(parts)-1]] = true
	}
	for _, p := range []int{sftpPort, httpPort} {
		if !published[strconv.Itoa(p)] {
			t.Errorf("compose.yaml: services.edigw does not publish container port %d (ports: %q)", p, gw.Ports)
		}
	}

	// The data directory is a named volume.
	dataVol := ""
	for _, v := range gw.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && parts[1] == dataDir {
			dataVol = parts[0]
		}
	}
	switch {
	case dataVol == "":
		t.Errorf("compose.yaml: services.edigw mounts nothing on %s: the spool would die with the container", dataDir)
	case strings.ContainsAny(dataVol, "./"):
		t.Errorf("compose.yaml: services.edigw mounts a host path %q on %s; want a named volume (owned by the image's user)", dataVol, dataDir)
	default:
		if _, ok := c.Volumes[dataVol]; !ok {
			t.Errorf("compose.yaml: volume %q (on %s) is not declared under volumes:", dataVol, dataDir)
		}
	}

	// Graceful stop and a read-only root file system.
	if d, err := time.ParseDuration(gw.StopGracePeriod); err != nil || d < minStopGrace {
		t.Errorf("compose.yaml: services.edigw.stop_grace_period is %q, want at least %v so running stages can finish", gw.StopGracePeriod, minStopGrace)
	}
	if gw.ReadOnly && !slices.ContainsFunc(gw.Tmpfs, func(s string) bool { return strings.HasPrefix(s, "/tmp") }) {
		t.Errorf("compose.yaml: services.edigw is read_only without a tmpfs on /tmp (S3 uploads stage bodies in os.TempDir)")
	}
	if !slices.Contains(gw.CapDrop, "ALL") {
		t.Errorf("compose.yaml: services.edigw does not drop ALL capabilities (cap_drop: %q)", gw.CapDrop)
	}

	// The configuration the image runs with, against this compose file.
	const cfgFile = "docker/gateway.yaml"
	cfg := loadConfig(t, cfgFile)
	for _, env := range envRefs(cfg) {
		if _, ok := gw.Environment[env]; !ok {
			t.Errorf("deploy/%s references $%s, but compose.yaml does not set it for services.edigw", cfgFile, env)
		}
	}
	if cfg.Archive.Kind != "s3" {
		t.Fatalf("deploy/%s: archive.kind is %q, want s3 (the compose s3 service)", cfgFile, cfg.Archive.Kind)
	}
	s3c := cfg.Archive.S3
	if !s3c.PathStyle {
		t.Errorf("deploy/%s: archive.s3.path_style must be true for versitygw", cfgFile)
	}
	host, port, err := net.SplitHostPort(strings.TrimPrefix(s3c.Endpoint, "http://"))
	if err != nil {
		t.Errorf("deploy/%s: archive.s3.endpoint %q: want http://<service>:<port>: %v", cfgFile, s3c.Endpoint, err)
	} else {
		if _, ok := c.Services[host]; !ok {
			t.Errorf("deploy/%s: archive.s3.endpoint %q names host %q, which is not a compose service", cfgFile, s3c.Endpoint, host)
		}
		if vgw := strings.TrimPrefix(s3.Environment["VGW_PORT"], ":"); vgw != port {
			t.Errorf("deploy/%s: archive.s3.endpoint port %s, but services.s3 listens on VGW_PORT %q", cfgFile, port, s3.Environment["VGW_PORT"])
		}
	}
	if _, ok := gw.DependsOn[host]; !ok && host != "" {
		t.Errorf("compose.yaml: services.edigw does not depend_on %q (its archive)", host)
	}
	// Both sides use the same keys.
	for gwKey, s3Key := range map[string]string{s3c.AccessKeyEnv: "ROOT_ACCESS_KEY_ID", s3c.SecretKeyEnv: "ROOT_SECRET_ACCESS_KEY"} {
		a, b := composeVar.FindStringSubmatch(gw.Environment[gwKey]), composeVar.FindStringSubmatch(s3.Environment[s3Key])
		if a == nil || b == nil || a[1] != b[1] {
			t.Errorf("compose.yaml: services.edigw %s=%q and services.s3 %s=%q must come from the same ${VARIABLE}", gwKey, gw.Environment[gwKey], s3Key, s3.Environment[s3Key])
		}
	}

	// versitygw: the version the tests run (scripts/s3server.sh), posix
	// backend on the volume, the archive bucket created before it starts.
	script, err := os.ReadFile(filepath.Join(repoRoot, "scripts", "s3server.sh"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`VERSITYGW_VERSION:-(v[0-9.]+)`).FindSubmatch(script)
	if m == nil {
		t.Fatalf("scripts/s3server.sh: no default VERSITYGW_VERSION found")
	}
	if want := "versity/versitygw:" + string(m[1]); s3.Image != want {
		t.Errorf("compose.yaml: services.s3.image is %q, want %q (the version scripts/s3server.sh tests against)", s3.Image, want)
	}
	if s3.Environment["VGW_BACKEND"] != "posix" {
		t.Errorf("compose.yaml: services.s3 VGW_BACKEND is %q, want posix", s3.Environment["VGW_BACKEND"])
	}
	root := s3.Environment["VGW_BACKEND_ARG"]
	if !slices.ContainsFunc(s3.Volumes, func(v string) bool { return strings.Contains(v, ":"+root) }) {
		t.Errorf("compose.yaml: services.s3 serves %q, which is not a volume (the archive would be lost with the container)", root)
	}
	if want := "mkdir -p " + path.Join(root, s3c.Bucket); !strings.Contains(strings.Join(s3.Entrypoint, " "), want) {
		t.Errorf("compose.yaml: services.s3.entrypoint does not create the bucket %q (%q)", s3c.Bucket, want)
	}
	if s3.Healthcheck == nil {
		t.Errorf("compose.yaml: services.s3 has no healthcheck (edigw waits for it)")
	}

	// postgres: for the next release, opt-in.
	if pg.Image != "postgres:15" {
		t.Errorf("compose.yaml: services.postgres.image is %q, want postgres:15", pg.Image)
	}
	if _, ok := gw.DependsOn["postgres"]; ok {
		t.Errorf("compose.yaml: services.edigw depends on postgres, which this release does not use")
	}
	next, err := os.ReadFile("docker/gateway-postgres.yaml")
	if err != nil {
		t.Fatalf("deploy/docker/gateway-postgres.yaml: %v", err)
	}
	for _, want := range []string{"NEXT RELEASE", "# spool: {driver: postgres, dsn_env: EDIGW_SPOOL_DSN}"} {
		if !bytes.Contains(next, []byte(want)) {
			t.Errorf("deploy/docker/gateway-postgres.yaml: missing %q", want)
		}
	}
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	abs, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// ---------------------------------------------------------------------------
// Kubernetes

// k8sObject is one document of a manifest.
type k8sObject struct {
	File string // kubernetes/base/<name>.yaml
	Doc  int    // 1-based document number in the file
	Kind string
	Name string
	Raw  []byte
}

func (o k8sObject) String() string {
	return fmt.Sprintf("%s (document %d, %s %s)", o.File, o.Doc, o.Kind, o.Name)
}

// k8sBase holds the single-node manifests; kubernetes/kustomization.yaml
// builds just that folder, kubernetes/cluster is the overlay for several nodes.
const k8sBase = "kubernetes/base"

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// k8sObjects parses every kubernetes/base/*.yaml, one object per document.
func k8sObjects(t *testing.T) []k8sObject {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(k8sBase, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no deploy/%s/*.yaml (%v)", k8sBase, err)
	}
	var out []k8sObject
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range docSeparator.Split(string(data), -1) {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			var head struct {
				APIVersion string `yaml:"apiVersion"`
				Kind       string `yaml:"kind"`
				Metadata   struct {
					Name string `yaml:"name"`
				} `yaml:"metadata"`
			}
			if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
				t.Errorf("%s document %d: %s", f, i+1, yaml.FormatError(err, false, true))
				continue
			}
			if head.Kind == "" || head.APIVersion == "" {
				t.Errorf("%s document %d: no apiVersion/kind", f, i+1)
				continue
			}
			if head.Kind != "Kustomization" && head.Metadata.Name == "" {
				t.Errorf("%s document %d: %s has no metadata.name", f, i+1, head.Kind)
			}
			out = append(out, k8sObject{File: filepath.ToSlash(f), Doc: i + 1, Kind: head.Kind, Name: head.Metadata.Name, Raw: []byte(doc)})
		}
	}
	return out
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, line := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

func find(objs []k8sObject, kind, name string) (k8sObject, bool) {
	for _, o := range objs {
		if o.Kind == kind && (name == "" || o.Name == name) {
			return o, true
		}
	}
	return k8sObject{}, false
}

func decode(t *testing.T, o k8sObject, v any) {
	t.Helper()
	if err := yaml.Unmarshal(o.Raw, v); err != nil {
		t.Fatalf("%v: %s", o, yaml.FormatError(err, false, true))
	}
}

type kustomization struct {
	Resources []string `yaml:"resources"`
	Images    []struct {
		Name    string `yaml:"name"`
		NewName string `yaml:"newName"`
		NewTag  string `yaml:"newTag"`
	} `yaml:"images"`
}

type probe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"`
	} `yaml:"httpGet"`
	TCPSocket any `yaml:"tcpSocket"`
	Exec      any `yaml:"exec"`
}

type keySelector struct {
	Name     string `yaml:"name"`
	Key      string `yaml:"key"`
	Optional bool   `yaml:"optional"`
}

type keyToPath struct {
	Key  string `yaml:"key"`
	Path string `yaml:"path"`
	Mode *int   `yaml:"mode"`
}

type container struct {
	Name  string   `yaml:"name"`
	Image string   `yaml:"image"`
	Args  []string `yaml:"args"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	Env []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			SecretKeyRef    *keySelector `yaml:"secretKeyRef"`
			ConfigMapKeyRef *keySelector `yaml:"configMapKeyRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	EnvFrom        []any  `yaml:"envFrom"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	StartupProbe   *probe `yaml:"startupProbe"`
	Resources      struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext *securityContext `yaml:"securityContext"`
	VolumeMounts    []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		SubPath   string `yaml:"subPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	} `yaml:"volumeMounts"`
}

type securityContext struct {
	RunAsNonRoot             *bool  `yaml:"runAsNonRoot"`
	RunAsUser                *int64 `yaml:"runAsUser"`
	ReadOnlyRootFilesystem   *bool  `yaml:"readOnlyRootFilesystem"`
	AllowPrivilegeEscalation *bool  `yaml:"allowPrivilegeEscalation"`
	Capabilities             *struct {
		Drop []string `yaml:"drop"`
		Add  []string `yaml:"add"`
	} `yaml:"capabilities"`
}

type volume struct {
	Name                  string `yaml:"name"`
	PersistentVolumeClaim *struct {
		ClaimName string `yaml:"claimName"`
	} `yaml:"persistentVolumeClaim"`
	ConfigMap *struct {
		Name  string      `yaml:"name"`
		Items []keyToPath `yaml:"items"`
	} `yaml:"configMap"`
	Secret *struct {
		SecretName  string      `yaml:"secretName"`
		Items       []keyToPath `yaml:"items"`
		DefaultMode *int        `yaml:"defaultMode"`
		Optional    bool        `yaml:"optional"`
	} `yaml:"secret"`
	Projected *struct {
		Sources []struct {
			ConfigMap *struct {
				Name  string      `yaml:"name"`
				Items []keyToPath `yaml:"items"`
			} `yaml:"configMap"`
			Secret *struct {
				Name  string      `yaml:"name"`
				Items []keyToPath `yaml:"items"`
			} `yaml:"secret"`
		} `yaml:"sources"`
	} `yaml:"projected"`
	EmptyDir any `yaml:"emptyDir"`
}

type deployment struct {
	Spec struct {
		Replicas *int `yaml:"replicas"`
		Strategy struct {
			Type          string `yaml:"type"`
			RollingUpdate *struct {
				MaxSurge       any `yaml:"maxSurge"`
				MaxUnavailable any `yaml:"maxUnavailable"`
			} `yaml:"rollingUpdate"`
		} `yaml:"strategy"`
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Template struct {
			Metadata struct {
				Labels map[string]string `yaml:"labels"`
			} `yaml:"metadata"`
			Spec struct {
				TerminationGracePeriodSeconds *int             `yaml:"terminationGracePeriodSeconds"`
				SecurityContext               *securityContext `yaml:"securityContext"`
				Affinity                      *struct {
					PodAntiAffinity *struct {
						Required  []podAffinityTerm `yaml:"requiredDuringSchedulingIgnoredDuringExecution"`
						Preferred []struct {
							Weight          int             `yaml:"weight"`
							PodAffinityTerm podAffinityTerm `yaml:"podAffinityTerm"`
						} `yaml:"preferredDuringSchedulingIgnoredDuringExecution"`
					} `yaml:"podAntiAffinity"`
				} `yaml:"affinity"`
				Containers []container `yaml:"containers"`
				Volumes    []volume    `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type podAffinityTerm struct {
	TopologyKey   string `yaml:"topologyKey"`
	LabelSelector struct {
		MatchLabels map[string]string `yaml:"matchLabels"`
	} `yaml:"labelSelector"`
}

type service struct {
	Spec struct {
		Type                  string            `yaml:"type"`
		ExternalTrafficPolicy string            `yaml:"externalTrafficPolicy"`
		SessionAffinity       *string           `yaml:"sessionAffinity"`
		Selector              map[string]string `yaml:"selector"`
		Ports                 []struct {
			Name       string `yaml:"name"`
			Port       int    `yaml:"port"`
			TargetPort any    `yaml:"targetPort"`
		} `yaml:"ports"`
	} `yaml:"spec"`
}

type configMap struct {
	Data       map[string]string `yaml:"data"`
	BinaryData map[string]string `yaml:"binaryData"` // base64
}

// value returns key k of the ConfigMap, decoding binaryData.
func (m configMap) value(k string) (string, bool, error) {
	if v, ok := m.Data[k]; ok {
		return v, true, nil
	}
	v, ok := m.BinaryData[k]
	if !ok {
		return "", false, nil
	}
	b, err := base64.StdEncoding.DecodeString(v)
	return string(b), true, err
}

type secret struct {
	Data       map[string]string `yaml:"data"`
	StringData map[string]string `yaml:"stringData"`
}

// knownPodSpecKeys and knownContainerKeys catch misspelt fields (which
// Kubernetes would reject or, with some clients, drop).
var (
	knownPodSpecKeys = set("activeDeadlineSeconds", "affinity", "automountServiceAccountToken", "containers",
		"dnsConfig", "dnsPolicy", "enableServiceLinks", "hostAliases", "hostname", "imagePullSecrets",
		"initContainers", "nodeSelector", "priorityClassName", "securityContext", "serviceAccountName",
		"terminationGracePeriodSeconds", "tolerations", "topologySpreadConstraints", "volumes")
	knownContainerKeys = set("args", "command", "env", "envFrom", "image", "imagePullPolicy", "livenessProbe",
		"name", "ports", "readinessProbe", "resources", "securityContext", "startupProbe", "volumeMounts",
		"workingDir")
)

func set(s ...string) map[string]bool {
	m := map[string]bool{}
	for _, x := range s {
		m[x] = true
	}
	return m
}

func TestKubernetes(t *testing.T) {
	objs := k8sObjects(t)

	// The kinds, and kustomization.yaml lists exactly the other files.
	for _, kind := range []string{"Deployment", "Service", "PersistentVolumeClaim", "ConfigMap", "Secret", "Kustomization"} {
		if _, ok := find(objs, kind, ""); !ok {
			t.Errorf("deploy/%s: no %s in any *.yaml", k8sBase, kind)
		}
	}
	ko, ok := find(objs, "Kustomization", "")
	if !ok {
		t.FailNow()
	}
	if ko.File != k8sBase+"/kustomization.yaml" {
		t.Errorf("the Kustomization is in %s, want %s/kustomization.yaml", ko.File, k8sBase)
	}
	var kz kustomization
	decode(t, ko, &kz)
	listed := map[string]bool{}
	for _, r := range kz.Resources {
		listed[r] = true
		if _, err := os.Stat(filepath.Join(k8sBase, filepath.FromSlash(r))); err != nil {
			t.Errorf("%s/kustomization.yaml: resource %s: %v", k8sBase, r, err)
		}
	}
	for _, o := range objs {
		if base := strings.TrimPrefix(o.File, k8sBase+"/"); o.Kind != "Kustomization" && !listed[base] {
			t.Errorf("%s/kustomization.yaml: resources does not list %s (%s %s)", k8sBase, base, o.Kind, o.Name)
			listed[base] = true // once per file
		}
	}

	// The Deployment.
	do, ok := find(objs, "Deployment", "")
	if !ok {
		t.FailNow()
	}
	var d deployment
	decode(t, do, &d)
	var rawDep struct {
		Spec struct {
			Template struct {
				Spec map[string]any `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	decode(t, do, &rawDep)
	for k := range rawDep.Spec.Template.Spec {
		if !knownPodSpecKeys[k] {
			t.Errorf("%v: spec.template.spec.%s is not a field this test knows (misspelt?)", do, k)
		}
	}
	if cs, ok := rawDep.Spec.Template.Spec["containers"].([]any); ok {
		for _, c := range cs {
			m, _ := c.(map[string]any)
			for k := range m {
				if !knownContainerKeys[k] {
					t.Errorf("%v: containers[].%s is not a field this test knows (misspelt?)", do, k)
				}
			}
		}
	}
	spec := d.Spec.Template.Spec
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 {
		t.Errorf("%v: replicas must be 1 (the SQLite spool has one writer)", do)
	}
	if d.Spec.Strategy.Type != "Recreate" {
		t.Errorf("%v: strategy.type is %q, want Recreate (a rolling update would run two writers on one SQLite spool)", do, d.Spec.Strategy.Type)
	}
	for k, v := range d.Spec.Selector.MatchLabels {
		if d.Spec.Template.Metadata.Labels[k] != v {
			t.Errorf("%v: selector %s=%s does not match the pod template's labels", do, k, v)
		}
	}
	if g := spec.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second < minStopGrace {
		t.Errorf("%v: terminationGracePeriodSeconds must be at least %v so running stages can finish", do, minStopGrace)
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("%v: %d containers, want 1", do, len(spec.Containers))
	}
	c := spec.Containers[0]
	for _, img := range kz.Images {
		if img.Name != "" && c.Image != img.Name && !strings.HasPrefix(c.Image, img.Name+":") {
			t.Errorf("%v: image %q is not the %q that kustomization.yaml images: rewrites", do, c.Image, img.Name)
		}
	}

	// Non-root, read-only, no capabilities.
	psc, csc := spec.SecurityContext, c.SecurityContext
	nonRoot := (csc != nil && csc.RunAsNonRoot != nil && *csc.RunAsNonRoot) || (psc != nil && psc.RunAsNonRoot != nil && *psc.RunAsNonRoot)
	if !nonRoot {
		t.Errorf("%v: runAsNonRoot is not true (pod or container securityContext)", do)
	}
	for _, sc := range []*securityContext{psc, csc} {
		if sc != nil && sc.RunAsUser != nil && *sc.RunAsUser == 0 {
			t.Errorf("%v: runAsUser 0", do)
		}
	}
	if csc == nil {
		t.Fatalf("%v: container %s has no securityContext", do, c.Name)
	}
	if csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem {
		t.Errorf("%v: container securityContext.readOnlyRootFilesystem is not true", do)
	}
	if csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation {
		t.Errorf("%v: container securityContext.allowPrivilegeEscalation is not false", do)
	}
	if csc.Capabilities == nil || !slices.Contains(csc.Capabilities.Drop, "ALL") {
		t.Errorf("%v: container securityContext.capabilities.drop does not include ALL", do)
	} else if len(csc.Capabilities.Add) > 0 {
		t.Errorf("%v: container adds capabilities %q; port %d needs none", do, csc.Capabilities.Add, sftpPort)
	}

	// Ports and probes.
	ports := map[string]int{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
		ports[strconv.Itoa(p.ContainerPort)] = p.ContainerPort
	}
	for _, p := range []int{sftpPort, httpPort} {
		if _, ok := ports[strconv.Itoa(p)]; !ok {
			t.Errorf("%v: container does not declare port %d", do, p)
		}
	}
	checkProbe := func(what string, p *probe, path string) {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%v: %s is not an httpGet probe of %s on %d", do, what, path, httpPort)
			return
		}
		port := ports[fmt.Sprint(p.HTTPGet.Port)]
		if p.HTTPGet.Path != path || port != httpPort {
			t.Errorf("%v: %s is GET %s on port %v (%d), want GET %s on %d", do, what, p.HTTPGet.Path, p.HTTPGet.Port, port, path, httpPort)
		}
	}
	checkProbe("livenessProbe", c.LivenessProbe, "/healthz")
	checkProbe("readinessProbe", c.ReadinessProbe, "/readyz")
	if c.StartupProbe != nil {
		checkProbe("startupProbe", c.StartupProbe, "/healthz")
	}
	for _, r := range []string{"cpu", "memory"} {
		if c.Resources.Requests[r] == "" {
			t.Errorf("%v: no resources.requests.%s", do, r)
		}
		if c.Resources.Limits[r] == "" {
			t.Errorf("%v: no resources.limits.%s", do, r)
		}
	}

	// Volumes: every mount has a volume, every volume is mounted, and each
	// names an object of these manifests.
	vols := map[string]volume{}
	for _, v := range spec.Volumes {
		vols[v.Name] = v
	}
	mounts := map[string]string{} // volume -> mount path
	for _, m := range c.VolumeMounts {
		if _, ok := vols[m.Name]; !ok {
			t.Errorf("%v: volumeMount %s (%s) has no volume", do, m.Name, m.MountPath)
		}
		if m.SubPath != "" {
			t.Errorf("%v: volumeMount %s uses subPath, which never sees ConfigMap/Secret updates", do, m.Name)
		}
		mounts[m.Name] = m.MountPath
	}
	mountOf := func(p string) (volume, string, bool) { // the volume whose mount path is p
		for name, mp := range mounts {
			if mp == p {
				return vols[name], name, true
			}
		}
		return volume{}, "", false
	}
	for _, v := range spec.Volumes {
		if _, ok := mounts[v.Name]; !ok {
			t.Errorf("%v: volume %s is not mounted", do, v.Name)
		}
		if v.PersistentVolumeClaim != nil {
			if _, ok := find(objs, "PersistentVolumeClaim", v.PersistentVolumeClaim.ClaimName); !ok {
				t.Errorf("%v: volume %s claims PersistentVolumeClaim %q, which no manifest defines", do, v.Name, v.PersistentVolumeClaim.ClaimName)
			}
		}
		if v.ConfigMap != nil {
			if _, ok := find(objs, "ConfigMap", v.ConfigMap.Name); !ok {
				t.Errorf("%v: volume %s uses ConfigMap %q, which no manifest defines", do, v.Name, v.ConfigMap.Name)
			}
		}
	}
	if tmp, _, ok := mountOf("/tmp"); !ok || tmp.EmptyDir == nil {
		t.Errorf("%v: no emptyDir on /tmp: with a read-only root file system, S3 uploads cannot stage bodies in os.TempDir", do)
	}

	// The configuration: args name a file of the config ConfigMap.
	if len(c.Args) != 3 || c.Args[0] != "serve" || c.Args[1] != "--config" {
		t.Fatalf("%v: args are %q, want [serve --config <file>]", do, c.Args)
	}
	cfgPath := c.Args[2]
	cv, cvName, ok := mountOf(path.Dir(cfgPath))
	if !ok || cv.ConfigMap == nil {
		t.Fatalf("%v: --config %s: no ConfigMap volume is mounted on %s", do, cfgPath, path.Dir(cfgPath))
	}
	cmo, ok := find(objs, "ConfigMap", cv.ConfigMap.Name)
	if !ok {
		t.Fatalf("%v: volume %s: ConfigMap %s is not defined", do, cvName, cv.ConfigMap.Name)
	}
	var cm configMap
	decode(t, cmo, &cm)
	gwYAML, ok := cm.Data[path.Base(cfgPath)]
	if !ok {
		t.Fatalf("%v: no data key %q (the Deployment's --config %s)", cmo, path.Base(cfgPath), cfgPath)
	}
	cfg := loadConfigData(t, cmo.String()+" data."+path.Base(cfgPath), gwYAML)
	name := cmo.File + " gateway.yaml"
	if dv, _, ok := mountOf(cfg.DataDir); !ok || dv.PersistentVolumeClaim == nil {
		t.Errorf("%s: data_dir %s is not a PersistentVolumeClaim mount of the Deployment", name, cfg.DataDir)
	}
	for what, p := range map[string]string{"sftp.host_key_dir": cfg.SFTP.HostKeyDir, "spool.path": cfg.Spool.Path, "blobs.dir": cfg.Blobs.Dir} {
		if !strings.HasPrefix(p, cfg.DataDir+"/") {
			t.Errorf("%s: %s %s is not on the data volume %s", name, what, p, cfg.DataDir)
		}
	}
	checkListen(t, name+": sftp.listen", cfg.SFTP.Listen, sftpPort)
	checkHTTPListen(t, name, cfg)

	// Secrets: every secretKeyRef names a key of the Secret, and every
	// variable the configuration references is set.
	so, ok := find(objs, "Secret", "")
	if !ok {
		t.FailNow()
	}
	var sec secret
	decode(t, so, &sec)
	secretKey := func(k string) (string, bool) {
		if v, ok := sec.StringData[k]; ok {
			return v, true
		}
		v, ok := sec.Data[k]
		return v, ok // base64: only presence is checked
	}
	envSet := map[string]bool{}
	for _, e := range c.Env {
		envSet[e.Name] = true
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			r := e.ValueFrom.SecretKeyRef
			if r.Name != so.Name {
				t.Errorf("%v: env %s: secretKeyRef names Secret %q; the manifests define %q", do, e.Name, r.Name, so.Name)
			} else if _, ok := secretKey(r.Key); !ok {
				t.Errorf("%v: env %s: key %q is not in %v", do, e.Name, r.Key, so)
			}
		}
	}
	for _, env := range envRefs(cfg) {
		if !envSet[env] {
			t.Errorf("%s references $%s, but the Deployment's container does not set it", name, env)
		}
	}

	// Partner profiles: the projected volume on cfg.Partners, rebuilt here
	// from the ConfigMap and Secret, is the example partners and loads.
	pv, pvName, ok := mountOf(cfg.Partners)
	if !ok || pv.Projected == nil {
		t.Fatalf("%s: partners %s is not a projected volume mount of the Deployment", name, cfg.Partners)
	}
	tree := t.TempDir()
	got := map[string]string{} // path in the tree -> where it came from
	put := func(from k8sObject, items []keyToPath, value func(string) (string, bool)) {
		for _, it := range items {
			v, ok := value(it.Key)
			if !ok {
				t.Errorf("%v: volume %s: key %q is not in %v", do, pvName, it.Key, from)
				continue
			}
			if prev, dup := got[it.Path]; dup {
				t.Errorf("%v: volume %s: path %s comes from both %s and %v", do, pvName, it.Path, prev, from)
			}
			got[it.Path] = fmt.Sprintf("%s %s key %s", from.Kind, from.Name, it.Key)
			f := filepath.Join(tree, filepath.FromSlash(it.Path))
			if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(f, []byte(v), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, s := range pv.Projected.Sources {
		switch {
		case s.ConfigMap != nil:
			o, ok := find(objs, "ConfigMap", s.ConfigMap.Name)
			if !ok {
				t.Errorf("%v: volume %s: ConfigMap %q is not defined (generate %s with -update)", do, pvName, s.ConfigMap.Name, partnersManifest)
				continue
			}
			if len(s.ConfigMap.Items) == 0 {
				t.Errorf("%v: volume %s: ConfigMap %s without items: its flat keys cannot make the partner folders", do, pvName, s.ConfigMap.Name)
			}
			var m configMap
			decode(t, o, &m)
			put(o, s.ConfigMap.Items, func(k string) (string, bool) {
				v, ok, err := m.value(k)
				if err != nil {
					t.Errorf("%v: binaryData %s: %v", o, k, err)
				}
				return v, ok
			})
		case s.Secret != nil:
			if s.Secret.Name != so.Name {
				t.Errorf("%v: volume %s: Secret %q is not defined", do, pvName, s.Secret.Name)
				continue
			}
			put(so, s.Secret.Items, func(k string) (string, bool) {
				if _, ok := sec.Data[k]; ok {
					t.Errorf("%v: %s: give partner files as stringData in the example, not base64", so, k)
				}
				v, ok := sec.StringData[k]
				return v, ok
			})
		}
	}
	want := examplePartnerFiles(t)
	for _, f := range want {
		from, ok := got[f.Path]
		if !ok {
			if f.Secret {
				t.Errorf("%v: volume %s does not project %s: add {key: %s, path: %s} to the secret source's items and the key to %v", do, pvName, f.Path, f.Key, f.Path, so)
			} else {
				t.Errorf("%v: volume %s does not project %s: add {key: %s, path: %s} to the configMap source's items (and run -update)", do, pvName, f.Path, f.Key, f.Path)
			}
			continue
		}
		if gotKey := from[strings.LastIndex(from, " ")+1:]; gotKey != f.Key {
			t.Errorf("%v: volume %s: %s comes from key %s, want %s", do, pvName, f.Path, gotKey, f.Key)
		}
		b, err := os.ReadFile(filepath.Join(tree, filepath.FromSlash(f.Path)))
		if err == nil && string(b) != f.Content {
			t.Errorf("%s (%s) differs from %s/%s: run `go test ./deploy -run TestKubernetesPartners -update` (or fix the Secret)", f.Path, from, examplesDir, f.Path)
		}
		delete(got, f.Path)
	}
	for p, from := range got {
		t.Errorf("%v: volume %s projects %s (%s), which is not a runtime file of %s", do, pvName, p, from, examplesDir)
	}
	set, err := partners.LoadDir(tree)
	if err != nil {
		t.Fatalf("the partner folders the Deployment mounts on %s do not load:\n%v", cfg.Partners, err)
	}
	endpoints := map[string]bool{}
	for _, e := range cfg.ERP.Endpoints {
		endpoints[e.Name] = true
	}
	for _, p := range set.Partners() {
		for _, doc := range p.Documents {
			if doc.ERP != "" && !endpoints[doc.ERP] && !cfg.ERP.Sink.Enabled {
				t.Errorf("%s: partner %s sends %s to ERP endpoint %q, which erp.endpoints does not define (it would go dead)", name, p.ID, doc.Name(), doc.ERP)
			}
		}
	}
	envRef := regexp.MustCompile(`(?m)^\s*[a-z_]+_env:\s*"?([A-Za-z_][A-Za-z0-9_]*)`)
	for _, f := range want {
		if path.Base(f.Path) != partners.ProfileFile {
			continue
		}
		for _, m := range envRef.FindAllStringSubmatch(f.Content, -1) {
			if !envSet[m[1]] {
				t.Errorf("%s/%s references $%s, but the Deployment's container does not set it", examplesDir, f.Path, m[1])
			}
		}
	}

	// Services: SFTP as a LoadBalancer keeping client addresses, HTTP in
	// the cluster; both select the pod and target its ports.
	var lb, ci bool
	for _, o := range objs {
		if o.Kind != "Service" {
			continue
		}
		var s service
		decode(t, o, &s)
		for k, v := range s.Spec.Selector {
			if d.Spec.Template.Metadata.Labels[k] != v {
				t.Errorf("%v: selector %s=%s does not match the Deployment's pod labels", o, k, v)
			}
		}
		if len(s.Spec.Selector) == 0 {
			t.Errorf("%v: no selector", o)
		}
		for _, p := range s.Spec.Ports {
			target, ok := ports[fmt.Sprint(p.TargetPort)]
			if p.TargetPort == nil {
				target, ok = ports[strconv.Itoa(p.Port)]
			}
			if !ok {
				t.Errorf("%v: port %s targets %v, which the container does not declare", o, p.Name, p.TargetPort)
				continue
			}
			switch {
			case target == sftpPort && s.Spec.Type == "LoadBalancer":
				lb = true
				if s.Spec.ExternalTrafficPolicy != "Local" {
					t.Errorf("%v: externalTrafficPolicy is %q, want Local: the SFTP listener needs client addresses for allowed_networks and bans", o, s.Spec.ExternalTrafficPolicy)
				}
			case target == httpPort && (s.Spec.Type == "ClusterIP" || s.Spec.Type == ""):
				ci = true
			}
		}
	}
	if !lb {
		t.Errorf("deploy/%s: no Service of type LoadBalancer for SFTP (%d)", k8sBase, sftpPort)
	}
	if !ci {
		t.Errorf("deploy/%s: no ClusterIP Service for HTTP (%d)", k8sBase, httpPort)
	}

	// The PVC.
	po, ok := find(objs, "PersistentVolumeClaim", "")
	if !ok {
		t.FailNow()
	}
	var pvc struct {
		Spec struct {
			AccessModes []string `yaml:"accessModes"`
			Resources   struct {
				Requests map[string]string `yaml:"requests"`
			} `yaml:"resources"`
		} `yaml:"spec"`
	}
	decode(t, po, &pvc)
	if !slices.Contains(pvc.Spec.AccessModes, "ReadWriteOnce") {
		t.Errorf("%v: accessModes %q, want ReadWriteOnce (one writer, block storage)", po, pvc.Spec.AccessModes)
	}
	if pvc.Spec.Resources.Requests["storage"] == "" {
		t.Errorf("%v: no resources.requests.storage", po)
	}
}

// partnerFile is a file of the example partners that the gateway needs at
// run time: everything but READMEs and the demo client's private key.
// testdata/ is needed: loading a profile checks that the inputs its maps'
// `tests:` name exist (and `edigw partners test` can then run in the pod).
type partnerFile struct {
	Path    string // relative to the partners folder: acme/maps/856.yaml
	Key     string // its ConfigMap/Secret key: acme__maps__856.yaml
	Secret  bool   // under a secrets/ folder: belongs in the Secret
	Content string
}

func examplePartnerFiles(t *testing.T) []partnerFile {
	t.Helper()
	root := filepath.Join(repoRoot, filepath.FromSlash(examplesDir))
	var out []partnerFile
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if strings.HasPrefix(d.Name(), ".") && rel != "." {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.Contains(rel, "/") || d.Name() == "README.md" {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte("PRIVATE KEY-----")) {
			return nil // the partner's half of a key pair: never on the server
		}
		out = append(out, partnerFile{Path: rel, Key: strings.ReplaceAll(rel, "/", "__"),
			Secret: slices.Contains(strings.Split(rel, "/"), "secrets"), Content: string(b)})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

const (
	partnersManifest = k8sBase + "/partners.yaml"
	deploymentFile   = k8sBase + "/deployment.yaml"
)

// partnersGenerated is what -update writes: the ConfigMap manifest and the
// items of the Deployment's "partners" volume (between the BEGIN/END
// generated markers of deployment.yaml).
func partnersGenerated(t *testing.T) (manifest string, regions map[string][]string) {
	t.Helper()
	var b strings.Builder
	b.WriteString(`# GENERATED from deploy/examples/partners by
#   go test ./deploy -run TestKubernetesPartners -update
# Do not edit. The example partners' files, one key per file (the path with
# "/" written "__"); the "partners" volume of deployment.yaml puts each key
# back at its path. Files that are not plain UTF-8 text (windows-1252 or
# CRLF CSV) are binaryData. Files under secrets/ go to the Secret instead.
apiVersion: v1
kind: ConfigMap
metadata:
  name: edigw-partners
  labels:
    app.kubernetes.io/name: edigw
`)
	var text, binary []partnerFile
	regions = map[string][]string{}
	for _, f := range examplePartnerFiles(t) {
		item := fmt.Sprintf("- {key: %s, path: %s}", f.Key, f.Path)
		switch {
		case f.Secret: // readable by the pod's fsGroup only
			item = fmt.Sprintf("- {key: %s, path: %s, mode: 288}   # 0440", f.Key, f.Path)
			regions["partners-secret-items"] = append(regions["partners-secret-items"], item)
			continue
		case plainText(f.Content):
			text = append(text, f)
		default:
			binary = append(binary, f)
		}
		regions["partners-configmap-items"] = append(regions["partners-configmap-items"], item)
	}
	if len(text) > 0 {
		b.WriteString("data:\n")
		for _, f := range text {
			b.WriteString("  " + f.Key + ": " + blockScalar(f.Content, 4))
		}
	}
	if len(binary) > 0 {
		b.WriteString("binaryData:\n")
		for _, f := range binary {
			b.WriteString("  " + f.Key + ": " + base64.StdEncoding.EncodeToString([]byte(f.Content)) + "\n")
		}
	}
	return b.String(), regions
}

// plainText reports whether s can be a YAML block scalar as is: UTF-8 with
// no control characters but newline and tab.
func plainText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if (r < 0x20 && r != '\n' && r != '\t') || r == 0x7f || r == 0xfeff {
			return false
		}
	}
	return true
}

// replaceRegions replaces the lines between "# BEGIN generated: NAME" and
// "# END generated: NAME" with regions[NAME], at the BEGIN line's indentation.
func replaceRegions(src string, regions map[string][]string) (string, error) {
	lines := strings.Split(src, "\n")
	var out []string
	seen := map[string]bool{}
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		out = append(out, line)
		name, ok := strings.CutPrefix(strings.TrimSpace(line), "# BEGIN generated: ")
		if !ok {
			continue
		}
		indent := line[:len(line)-len(strings.TrimLeft(line, " "))]
		j := i + 1
		for j < len(lines) && strings.TrimSpace(lines[j]) != "# END generated: "+name {
			j++
		}
		if j == len(lines) {
			return "", fmt.Errorf("no \"# END generated: %s\" after line %d", name, i+1)
		}
		for _, g := range regions[name] {
			out = append(out, indent+g)
		}
		seen[name] = true
		i = j - 1
	}
	for name := range regions {
		if !seen[name] {
			return "", fmt.Errorf("no \"# BEGIN generated: %s\" region", name)
		}
	}
	return strings.Join(out, "\n"), nil
}

// TestKubernetesPartners checks that kubernetes/base/partners.yaml and the
// generated regions of kubernetes/base/deployment.yaml are what -update makes
// of deploy/examples/partners (or, with -update, writes them).
func TestKubernetesPartners(t *testing.T) {
	manifest, regions := partnersGenerated(t)
	dep, err := os.ReadFile(deploymentFile)
	if err != nil {
		t.Fatal(err)
	}
	wantDep, err := replaceRegions(string(dep), regions)
	if err != nil {
		t.Fatalf("%s: %v", deploymentFile, err)
	}
	if *update {
		if err := os.WriteFile(partnersManifest, []byte(manifest), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(deploymentFile, []byte(wantDep), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(partnersManifest)
	if err != nil {
		t.Fatalf("%v (generate it: go test ./deploy -run TestKubernetesPartners -update)", err)
	}
	if string(got) != manifest {
		t.Errorf("deploy/%s is not what deploy/examples/partners generates: run `go test ./deploy -run TestKubernetesPartners -update`", partnersManifest)
	}
	if string(dep) != wantDep && !*update {
		t.Errorf("deploy/%s: the generated items of the partners volume are not those of deploy/examples/partners: run `go test ./deploy -run TestKubernetesPartners -update`", deploymentFile)
	}
	// The generated YAML reads back as the files.
	var cm configMap
	if err := yaml.Unmarshal(got, &cm); err != nil {
		t.Fatalf("%s: %s", partnersManifest, yaml.FormatError(err, false, true))
	}
	total := 0
	for _, f := range examplePartnerFiles(t) {
		if f.Secret {
			continue
		}
		total += len(f.Content)
		if v, _, err := cm.value(f.Key); err != nil || v != f.Content {
			t.Errorf("%s: key %s does not read back as %s/%s (%v)", partnersManifest, f.Key, examplesDir, f.Path, err)
		}
	}
	if total > 900<<10 {
		t.Errorf("%s: %d bytes of partner files; a ConfigMap holds at most 1 MiB", partnersManifest, total)
	}
}

// blockScalar renders s as a YAML literal block scalar, its lines indented
// by indent spaces, keeping the trailing newlines exactly.
func blockScalar(s string, indent int) string {
	chomp := "" // clip: exactly one trailing newline
	switch {
	case !strings.HasSuffix(s, "\n"):
		chomp = "-"
	case strings.HasSuffix(s, "\n\n"):
		chomp = "+"
	}
	header := "|"
	if strings.HasPrefix(s, " ") || strings.HasPrefix(s, "\n") {
		header += "2" // content indentation relative to the key's (2 spaces)
	}
	body := strings.TrimSuffix(s, "\n")
	var b strings.Builder
	b.WriteString(header + chomp + "\n")
	pad := strings.Repeat(" ", indent)
	for _, line := range strings.Split(body, "\n") {
		if line == "" {
			b.WriteString("\n")
		} else {
			b.WriteString(pad + line + "\n")
		}
	}
	return b.String()
}

// ---------------------------------------------------------------------------
// Kubernetes: several nodes (kubernetes/cluster)

// k8sCluster is the overlay that runs several nodes on PostgreSQL and S3.
const k8sCluster = "kubernetes/cluster"

// kObject is one object of a kustomize build, in generic form.
type kObject struct {
	Kind, Name string
	From       string // the file and document that defined it, and the patches applied
	Doc        map[string]any
}

func (o kObject) String() string { return fmt.Sprintf("%s %s (%s)", o.Kind, o.Name, o.From) }

// kustomizationFile is the part of kustomization.yaml that kustomizeBuild
// understands. It is decoded strictly: a feature it does not know
// (generators, namespace, components, patch targets, ...) fails the test
// instead of being ignored.
type kustomizationFile struct {
	APIVersion string   `yaml:"apiVersion"`
	Kind       string   `yaml:"kind"`
	Resources  []string `yaml:"resources"`
	Patches    []struct {
		Path   string `yaml:"path"`
		Patch  string `yaml:"patch"`
		Target any    `yaml:"target"`
	} `yaml:"patches"`
	Images []struct {
		Name    string `yaml:"name"`
		NewName string `yaml:"newName"`
		NewTag  string `yaml:"newTag"`
	} `yaml:"images"`
}

// parseDocs splits a manifest on "---" lines and decodes each non-empty
// document as a mapping.
func parseDocs(name string, data []byte) ([]map[string]any, error) {
	var out []map[string]any
	for i, doc := range docSeparator.Split(string(data), -1) {
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		var m map[string]any
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			return nil, fmt.Errorf("%s document %d: %s", name, i+1, yaml.FormatError(err, false, false))
		}
		out = append(out, m)
	}
	return out, nil
}

// kindName reads kind and metadata.name of a generic object.
func kindName(d map[string]any) (string, string) {
	kind, _ := d["kind"].(string)
	md, _ := d["metadata"].(map[string]any)
	name, _ := md["name"].(string)
	return kind, name
}

// inside reports whether p is dir or below it.
func inside(dir, p string) bool {
	rel, err := filepath.Rel(mustAbsPath(dir), mustAbsPath(p))
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

func mustAbsPath(p string) string {
	abs, err := filepath.Abs(filepath.FromSlash(p))
	if err != nil {
		panic(err)
	}
	return abs
}

// kustomizeBuild is this test's reading of `kubectl kustomize dir` for the
// features these manifests use: resources (files, and folders built
// recursively), strategic-merge patches given by path or inline, naming
// their target by kind and metadata.name, and images. Where kubectl is
// installed, compareKustomize checks that the real build agrees.
func kustomizeBuild(dir string) ([]kObject, error) {
	kf := path.Join(dir, "kustomization.yaml")
	data, err := os.ReadFile(filepath.FromSlash(kf))
	if err != nil {
		return nil, err
	}
	var k kustomizationFile
	if err := yaml.NewDecoder(bytes.NewReader(data), yaml.DisallowUnknownField()).Decode(&k); err != nil {
		return nil, fmt.Errorf("%s: %s\n(deploy_test.go's kustomize build knows resources, patches by path or inline without target, and images: extend kustomizeBuild)", kf, yaml.FormatError(err, false, false))
	}
	if k.Kind != "Kustomization" {
		return nil, fmt.Errorf("%s: kind is %q, want Kustomization", kf, k.Kind)
	}
	var objs []kObject
	index := func(kind, name string) int {
		return slices.IndexFunc(objs, func(o kObject) bool { return o.Kind == kind && o.Name == name })
	}
	for _, r := range k.Resources {
		p := path.Join(dir, r)
		st, err := os.Stat(filepath.FromSlash(p))
		if err != nil {
			return nil, fmt.Errorf("%s: resource %s: %v", kf, r, err)
		}
		var add []kObject
		if st.IsDir() {
			if inside(p, dir) {
				return nil, fmt.Errorf("%s: resource %s (%s) contains this kustomization's folder: kustomize refuses that as a cycle", kf, r, p)
			}
			if add, err = kustomizeBuild(p); err != nil {
				return nil, err
			}
		} else {
			if !inside(dir, p) {
				return nil, fmt.Errorf("%s: resource %s is outside %s: kustomize loads files only from the kustomization's folder (refer to the folder of a base instead)", kf, r, dir)
			}
			b, err := os.ReadFile(filepath.FromSlash(p))
			if err != nil {
				return nil, err
			}
			docs, err := parseDocs(p, b)
			if err != nil {
				return nil, err
			}
			for i, d := range docs {
				kind, name := kindName(d)
				if kind == "" || name == "" {
					return nil, fmt.Errorf("%s document %d: no kind or metadata.name", p, i+1)
				}
				add = append(add, kObject{Kind: kind, Name: name, From: fmt.Sprintf("%s document %d", p, i+1), Doc: d})
			}
		}
		for _, o := range add {
			if j := index(o.Kind, o.Name); j >= 0 {
				return nil, fmt.Errorf("%s: %s %s is defined twice: %s and %s", kf, o.Kind, o.Name, objs[j].From, o.From)
			}
			objs = append(objs, o)
		}
	}
	for i, pt := range k.Patches {
		var src string
		var b []byte
		switch {
		case pt.Target != nil:
			return nil, fmt.Errorf("%s: patches[%d] has a target: deploy_test.go's kustomize build supports patches that name their object (kind, metadata.name) only", kf, i)
		case pt.Path != "" && pt.Patch == "":
			src = path.Join(dir, pt.Path)
			if !inside(dir, src) {
				return nil, fmt.Errorf("%s: patch %s is outside %s: kustomize loads files only from the kustomization's folder", kf, pt.Path, dir)
			}
			if b, err = os.ReadFile(filepath.FromSlash(src)); err != nil {
				return nil, fmt.Errorf("%s: patch %s: %v", kf, pt.Path, err)
			}
		case pt.Patch != "" && pt.Path == "":
			src, b = fmt.Sprintf("%s patches[%d]", kf, i), []byte(pt.Patch)
		default:
			return nil, fmt.Errorf("%s: patches[%d] needs exactly one of path and patch", kf, i)
		}
		docs, err := parseDocs(src, b)
		if err != nil {
			return nil, err
		}
		for _, d := range docs {
			kind, name := kindName(d)
			j := index(kind, name)
			if j < 0 {
				return nil, fmt.Errorf("%s patches %s %q, which the build of %s does not define", src, kind, name, dir)
			}
			if d["$patch"] == "delete" {
				objs = slices.Delete(objs, j, j+1)
				continue
			}
			merged, err := strategicMerge(objs[j].Doc, d, nil)
			if err != nil {
				return nil, fmt.Errorf("%s (%s %s): %v", src, kind, name, err)
			}
			objs[j].Doc = merged
			objs[j].From += ", patched by " + src
		}
	}
	for _, im := range k.Images {
		for _, o := range objs {
			spec, _ := dig(o.Doc, "spec", "template", "spec").(map[string]any)
			for _, list := range []string{"initContainers", "containers"} {
				cs, _ := spec[list].([]any)
				for _, c := range cs {
					cm, _ := c.(map[string]any)
					img, _ := cm["image"].(string)
					name, tag, _ := strings.Cut(img, ":")
					if name != im.Name {
						continue
					}
					if im.NewName != "" {
						name = im.NewName
					}
					if im.NewTag != "" {
						tag = im.NewTag
					}
					cm["image"] = name
					if tag != "" {
						cm["image"] = name + ":" + tag
					}
				}
			}
		}
	}
	return objs, nil
}

// dig follows keys through nested mappings; nil when one is missing.
func dig(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// patchMergeKey is the Kubernetes API's patchMergeKey of the list field
// under the path at: a patch's element merges into the element with the
// same key. Lists without one (args, accessModes, tolerations, the
// affinity terms, ...) are replaced whole, as the API patches them.
func patchMergeKey(at []string, field string) string {
	switch field {
	case "containers", "initContainers", "volumes", "env", "imagePullSecrets":
		return "name"
	case "volumeMounts":
		return "mountPath"
	case "ports":
		if slices.Contains(at, "containers") || slices.Contains(at, "initContainers") {
			return "containerPort"
		}
		return "port" // a Service's
	case "topologySpreadConstraints":
		return "topologyKey"
	}
	return ""
}

// strategicMerge applies a strategic-merge patch: mappings merge, null
// deletes a key, `$patch: replace` replaces a mapping, lists with a merge
// key merge element by element (`$patch: delete` removes one; kustomize's
// order: the patch's elements, then the others), other lists and scalars
// are replaced. dst is not modified.
func strategicMerge(dst, patch map[string]any, at []string) (map[string]any, error) {
	switch patch["$patch"] {
	case nil:
	case "replace":
		dst = nil
	default:
		return nil, fmt.Errorf("%s: $patch: %v is not supported here", strings.Join(at, "."), patch["$patch"])
	}
	out := maps.Clone(dst)
	if out == nil {
		out = map[string]any{}
	}
	for k, pv := range patch {
		if k == "$patch" {
			continue
		}
		if strings.HasPrefix(k, "$") {
			return nil, fmt.Errorf("%s: the directive %s is not supported by deploy_test.go's kustomize build", strings.Join(at, "."), k)
		}
		here := append(slices.Clip(at), k)
		switch pv := pv.(type) {
		case nil:
			delete(out, k)
		case map[string]any:
			dm, _ := out[k].(map[string]any)
			m, err := strategicMerge(dm, pv, here)
			if err != nil {
				return nil, err
			}
			out[k] = m
		case []any:
			key := patchMergeKey(at, k)
			if key == "" {
				out[k] = pv
				continue
			}
			dl, _ := out[k].([]any)
			l, err := mergeList(dl, pv, key, here)
			if err != nil {
				return nil, err
			}
			out[k] = l
		default:
			out[k] = pv
		}
	}
	return out, nil
}

func mergeList(dst, patch []any, key string, at []string) ([]any, error) {
	keyOf := func(e any) (string, bool) {
		m, _ := e.(map[string]any)
		v, ok := m[key]
		return fmt.Sprint(v), ok && v != nil
	}
	var out []any
	used := map[int]bool{}
	for i, pe := range patch {
		pk, ok := keyOf(pe)
		if !ok {
			return nil, fmt.Errorf("%s[%d]: no %s (the list's merge key)", strings.Join(at, "."), i, key)
		}
		pm := pe.(map[string]any)
		j := slices.IndexFunc(dst, func(de any) bool { dk, ok := keyOf(de); return ok && dk == pk })
		if j >= 0 {
			used[j] = true
		}
		if pm["$patch"] == "delete" {
			continue
		}
		var base map[string]any
		if j >= 0 {
			base, _ = dst[j].(map[string]any)
		}
		m, err := strategicMerge(base, pm, append(slices.Clip(at), pk))
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	for j, de := range dst {
		if !used[j] {
			out = append(out, de)
		}
	}
	return out, nil
}

// canonical sorts every list of mappings (by its JSON), so that two builds
// that differ only in the order of containers, volumes, env and the like
// compare equal.
func canonical(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = canonical(e)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = canonical(e)
		}
		if !slices.ContainsFunc(out, func(e any) bool { _, ok := e.(map[string]any); return !ok }) {
			slices.SortFunc(out, func(a, b any) int {
				ja, _ := json.Marshal(a)
				jb, _ := json.Marshal(b)
				return bytes.Compare(ja, jb)
			})
		}
		return out
	}
	return v
}

// compareKustomize checks kustomizeBuild against `kubectl kustomize dir`
// when kubectl is installed (CI has none: then it only logs).
func compareKustomize(t *testing.T, dir string, objs []kObject) {
	t.Helper()
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Logf("kubectl is not installed: deploy/%s is not compared with `kubectl kustomize`", dir)
		return
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, kubectl, "kustomize", filepath.FromSlash(dir))
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Errorf("kubectl kustomize deploy/%s: %v\n%s", dir, err, stderr.String())
		return
	}
	docs, err := parseDocs("kubectl kustomize "+dir, out)
	if err != nil {
		t.Fatal(err)
	}
	ours := map[string]kObject{}
	for _, o := range objs {
		ours[o.Kind+" "+o.Name] = o
	}
	for _, d := range docs {
		kind, name := kindName(d)
		o, ok := ours[kind+" "+name]
		if !ok {
			t.Errorf("kubectl kustomize deploy/%s makes %s %s, which deploy_test.go's build does not", dir, kind, name)
			continue
		}
		delete(ours, kind+" "+name)
		if want, got := canonical(d), canonical(o.Doc); !reflect.DeepEqual(want, got) {
			w, _ := yaml.Marshal(want)
			g, _ := yaml.Marshal(got)
			wl, gl := strings.Split(string(w), "\n"), strings.Split(string(g), "\n")
			i := 0
			for i < len(wl) && i < len(gl) && wl[i] == gl[i] {
				i++
			}
			t.Errorf("deploy/%s: %v differs from what `kubectl kustomize` makes; first difference (sorted YAML, line %d):\n  kubectl:         %q\n  deploy_test.go:  %q",
				dir, o, i+1, line(wl, i), line(gl, i))
		}
	}
	for _, k := range keys(ours) {
		t.Errorf("deploy_test.go's build of deploy/%s makes %v, which `kubectl kustomize` does not", dir, ours[k])
	}
}

func line(lines []string, i int) string {
	if i < len(lines) {
		return lines[i]
	}
	return "(end)"
}

// decodeObject decodes a built object into a typed view.
func decodeObject(t *testing.T, o kObject, v any) {
	t.Helper()
	b, err := yaml.Marshal(o.Doc)
	if err == nil {
		err = yaml.Unmarshal(b, v)
	}
	if err != nil {
		t.Fatalf("%v: %v", o, err)
	}
}

// intValue reads an integer field (maxSurge, minAvailable, ...); percentages
// and other strings are not integers.
func intValue(v any) (int, bool) {
	switch v := v.(type) {
	case int:
		return v, true
	case int64:
		return int(v), true
	case uint64:
		return int(v), true
	}
	return 0, false
}

// hostKeyFiles reads the host key file names the SFTP listener loads from
// sftp.host_key_dir (the constants of gateway/sftpd/hostkeys.go).
func hostKeyFiles(t *testing.T) []string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(repoRoot, "gateway", "sftpd", "hostkeys.go"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range regexp.MustCompile(`(?m)^\s*hostKey\w*\s*=\s*"([^"]+)"`).FindAllSubmatch(src, -1) {
		out = append(out, string(m[1]))
	}
	if len(out) < 2 {
		t.Fatalf("gateway/sftpd/hostkeys.go: found host key file names %q, want the ed25519 and RSA ones (constants hostKey... = \"ssh_host_..._key\"): update hostKeyFiles", out)
	}
	return out
}

// selects reports whether the label selector is non-empty and matches labels.
func selects(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return len(selector) > 0
}

// TestKustomizeBuilds checks that kubernetes/kustomization.yaml builds the
// single-node manifests of kubernetes/base, and, where kubectl is installed,
// that deploy_test.go's builds agree with kubectl's.
func TestKustomizeBuilds(t *testing.T) {
	single, err := kustomizeBuild("kubernetes")
	if err != nil {
		t.Fatal(err)
	}
	var got, want []string
	for _, o := range single {
		got = append(got, o.Kind+" "+o.Name)
	}
	for _, o := range k8sObjects(t) {
		if o.Kind != "Kustomization" {
			want = append(want, o.Kind+" "+o.Name)
		}
	}
	sort.Strings(got)
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Errorf("kubernetes/kustomization.yaml builds %q, want the objects of %s/*.yaml %q (`kubectl apply -k deploy/kubernetes` is the single node)", got, k8sBase, want)
	}
	compareKustomize(t, "kubernetes", single)
	cluster, err := kustomizeBuild(k8sCluster)
	if err != nil {
		t.Fatal(err)
	}
	compareKustomize(t, k8sCluster, cluster)
}

// TestKubernetesCluster checks the overlay for several nodes, as built:
// the spool in PostgreSQL and the payloads and archive in S3; what every
// node must share (host keys, outbox, partner profiles) shared, and
// nothing node-local that must outlive a pod; more than one replica,
// rolled one at a time, spread over machines, with a PodDisruptionBudget.
func TestKubernetesCluster(t *testing.T) {
	objs, err := kustomizeBuild(k8sCluster)
	if err != nil {
		t.Fatal(err)
	}
	get := func(kind, name string) (kObject, bool) {
		i := slices.IndexFunc(objs, func(o kObject) bool { return o.Kind == kind && (name == "" || o.Name == name) })
		if i < 0 {
			return kObject{}, false
		}
		return objs[i], true
	}
	all := func(kind string) []kObject {
		var out []kObject
		for _, o := range objs {
			if o.Kind == kind {
				out = append(out, o)
			}
		}
		return out
	}

	// Never a private key in the repository: host keys are made per installation.
	err = filepath.WalkDir(filepath.FromSlash(k8sCluster), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err == nil && bytes.Contains(b, []byte("PRIVATE KEY-----")) {
			t.Errorf("%s contains a private key: SFTP host keys are made per installation (ssh-keygen) and go in a Secret created from them, never into the repository", filepath.ToSlash(p))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}

	// The Deployment: replicas, rollout, spread.
	deps := all("Deployment")
	if len(deps) != 1 {
		t.Fatalf("deploy/%s builds %d Deployments, want 1", k8sCluster, len(deps))
	}
	do := deps[0]
	var d deployment
	decodeObject(t, do, &d)
	podSpec, _ := dig(do.Doc, "spec", "template", "spec").(map[string]any)
	for k := range podSpec {
		if !knownPodSpecKeys[k] {
			t.Errorf("%v: spec.template.spec.%s is not a field this test knows (misspelt?)", do, k)
		}
	}
	cs, _ := podSpec["containers"].([]any)
	for _, c := range cs {
		m, _ := c.(map[string]any)
		for k := range m {
			if !knownContainerKeys[k] {
				t.Errorf("%v: containers[].%s is not a field this test knows (misspelt?)", do, k)
			}
		}
	}
	replicas := 1
	if d.Spec.Replicas != nil {
		replicas = *d.Spec.Replicas
	}
	if replicas < 2 {
		t.Errorf("%v: replicas %d, want 2 or more: the overlay is for several nodes", do, replicas)
	}
	podLabels := d.Spec.Template.Metadata.Labels
	maxUnavailable := -1
	if d.Spec.Strategy.Type != "RollingUpdate" {
		t.Errorf("%v: strategy.type is %q, want RollingUpdate: with the spool in PostgreSQL old and new pods may run together, and Recreate would stop every node at once", do, d.Spec.Strategy.Type)
	} else if ru := d.Spec.Strategy.RollingUpdate; ru == nil {
		t.Errorf("%v: no strategy.rollingUpdate: the defaults (25%% of %d) round to maxSurge 1, maxUnavailable 0 only by accident; state them", do, replicas)
	} else {
		surge, ok1 := intValue(ru.MaxSurge)
		unavail, ok2 := intValue(ru.MaxUnavailable)
		switch {
		case !ok1 || !ok2:
			t.Errorf("%v: rollingUpdate maxSurge %v, maxUnavailable %v: want integers (percentages of a few replicas round unexpectedly)", do, ru.MaxSurge, ru.MaxUnavailable)
		case unavail > 1:
			t.Errorf("%v: rollingUpdate.maxUnavailable %d: want at most 1 (one node at a time)", do, unavail)
		case surge > 1:
			t.Errorf("%v: rollingUpdate.maxSurge %d: want at most 1", do, surge)
		case surge == 0 && unavail == 0:
			t.Errorf("%v: rollingUpdate maxSurge and maxUnavailable are both 0: the rollout cannot progress", do)
		default:
			maxUnavailable = unavail
		}
	}
	spreads := false
	if a := d.Spec.Template.Spec.Affinity; a != nil && a.PodAntiAffinity != nil {
		for _, p := range a.PodAntiAffinity.Preferred {
			if p.PodAffinityTerm.TopologyKey == "kubernetes.io/hostname" && selects(p.PodAffinityTerm.LabelSelector.MatchLabels, podLabels) && p.Weight > 0 {
				spreads = true
			}
		}
	}
	if !spreads {
		t.Errorf("%v: no preferred podAntiAffinity term on kubernetes.io/hostname selecting the pod's own labels %v: the replicas may share a machine", do, podLabels)
	}
	if g := d.Spec.Template.Spec.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second < minStopGrace {
		t.Errorf("%v: terminationGracePeriodSeconds must be at least %v so running stages can finish", do, minStopGrace)
	}

	// The PodDisruptionBudget.
	pdbs := all("PodDisruptionBudget")
	if len(pdbs) == 0 {
		t.Errorf("deploy/%s builds no PodDisruptionBudget: a node drain could evict every replica at once", k8sCluster)
	}
	for _, po := range pdbs {
		var pdb struct {
			Spec struct {
				MinAvailable   any `yaml:"minAvailable"`
				MaxUnavailable any `yaml:"maxUnavailable"`
				Selector       struct {
					MatchLabels map[string]string `yaml:"matchLabels"`
				} `yaml:"selector"`
			} `yaml:"spec"`
		}
		decodeObject(t, po, &pdb)
		if !selects(pdb.Spec.Selector.MatchLabels, podLabels) {
			t.Errorf("%v: selector %v does not select the Deployment's pods (labels %v)", po, pdb.Spec.Selector.MatchLabels, podLabels)
		}
		minAvail, ok := intValue(pdb.Spec.MinAvailable)
		switch {
		case !ok:
			t.Errorf("%v: minAvailable %v: want an integer number of pods", po, pdb.Spec.MinAvailable)
		case minAvail < 1 || minAvail >= replicas:
			t.Errorf("%v: minAvailable %d with %d replicas: want 1 to %d (at least one pod serving; and at least one may go, or a node drain never finishes)", po, minAvail, replicas, replicas-1)
		case maxUnavailable >= 0 && replicas-maxUnavailable < minAvail:
			t.Errorf("%v: minAvailable %d, but a rollout takes %d of %d replicas down at once", po, minAvail, maxUnavailable, replicas)
		}
	}

	// The container, its volumes and its configuration.
	spec := d.Spec.Template.Spec
	if len(spec.Containers) != 1 {
		t.Fatalf("%v: %d containers, want 1", do, len(spec.Containers))
	}
	c := spec.Containers[0]
	vols := map[string]volume{}
	for _, v := range spec.Volumes {
		vols[v.Name] = v
	}
	type mount struct {
		Vol      volume
		Path     string
		ReadOnly bool
	}
	var mounts []mount
	mounted := map[string]bool{}
	for _, m := range c.VolumeMounts {
		v, ok := vols[m.Name]
		if !ok {
			t.Errorf("%v: volumeMount %s (%s) has no volume", do, m.Name, m.MountPath)
			continue
		}
		if m.SubPath != "" {
			t.Errorf("%v: volumeMount %s uses subPath, which never sees ConfigMap/Secret updates", do, m.Name)
		}
		mounts = append(mounts, mount{v, path.Clean(m.MountPath), m.ReadOnly})
		mounted[m.Name] = true
	}
	for _, v := range spec.Volumes {
		if !mounted[v.Name] {
			t.Errorf("%v: volume %s is not mounted", do, v.Name)
		}
	}
	// mountFor returns the mount holding p: the one with the longest path
	// that is p or above it.
	mountFor := func(p string) (mount, bool) {
		var best mount
		found := false
		for _, m := range mounts {
			if (p == m.Path || strings.HasPrefix(p, m.Path+"/")) && (!found || len(m.Path) > len(best.Path)) {
				best, found = m, true
			}
		}
		return best, found
	}
	if m, ok := mountFor("/tmp"); !ok || m.Path != "/tmp" || m.Vol.EmptyDir == nil {
		t.Errorf("%v: no emptyDir on /tmp: with a read-only root file system, S3 uploads cannot stage bodies in os.TempDir", do)
	}

	if len(c.Args) != 3 || c.Args[0] != "serve" || c.Args[1] != "--config" {
		t.Fatalf("%v: args are %q, want [serve --config <file>]", do, c.Args)
	}
	cfgPath := c.Args[2]
	cm, ok := mountFor(path.Dir(cfgPath))
	if !ok || cm.Path != path.Dir(cfgPath) || cm.Vol.ConfigMap == nil {
		t.Fatalf("%v: --config %s: no ConfigMap volume is mounted on %s", do, cfgPath, path.Dir(cfgPath))
	}
	cmo, ok := get("ConfigMap", cm.Vol.ConfigMap.Name)
	if !ok {
		t.Fatalf("%v: the config volume's ConfigMap %s is not in the build", do, cm.Vol.ConfigMap.Name)
	}
	var cmv configMap
	decodeObject(t, cmo, &cmv)
	gwYAML, ok := cmv.Data[path.Base(cfgPath)]
	if !ok {
		t.Fatalf("%v: no data key %q (the Deployment's --config %s)", cmo, path.Base(cfgPath), cfgPath)
	}
	name := fmt.Sprintf("%v data.%s", cmo, path.Base(cfgPath))
	cfg := loadConfigData(t, name, gwYAML)
	checkListen(t, name+": sftp.listen", cfg.SFTP.Listen, sftpPort)
	checkHTTPListen(t, name, cfg)

	// Shared records and payloads.
	if cfg.Spool.Driver != "postgres" {
		t.Errorf("%s: spool.driver is %q, want postgres: SQLite has one writer, and every node must see the same records", name, cfg.Spool.Driver)
	}
	if cfg.Spool.DSNEnv == "" {
		t.Errorf("%s: spool.dsn_env is not set: the nodes would not know where the database is", name)
	}
	if cfg.Blobs.Kind != "s3" || cfg.Blobs.S3.Bucket == "" {
		t.Errorf("%s: blobs.kind %q, bucket %q: want s3 and a bucket, so that any node reads the payloads another received", name, cfg.Blobs.Kind, cfg.Blobs.S3.Bucket)
	}
	if cfg.Archive.Kind != "s3" || cfg.Archive.S3.Bucket == "" {
		t.Errorf("%s: archive.kind %q, bucket %q: want s3 and a bucket (a pod's archive folder dies with the pod)", name, cfg.Archive.Kind, cfg.Archive.S3.Bucket)
	}
	if b, a := cfg.Blobs.S3, cfg.Archive.S3; b.Bucket == a.Bucket && b.Endpoint == a.Endpoint {
		bp, ap := strings.Trim(b.Prefix, "/")+"/", strings.Trim(a.Prefix, "/")+"/"
		if bp == "/" || ap == "/" || strings.HasPrefix(bp, ap) || strings.HasPrefix(ap, bp) {
			t.Errorf("%s: blobs (prefix %q) and archive (prefix %q) share bucket %s with overlapping prefixes: give them separate buckets or prefixes", name, b.Prefix, a.Prefix, b.Bucket)
		}
	}
	if len(cfg.HTTP.Tokens) == 0 {
		t.Errorf("%s: http.tokens is empty: each node would generate its own admin token into its disposable data directory", name)
	}
	if cfg.ERP.Sink.Enabled {
		t.Errorf("%s: erp.sink.enabled: the built-in sink is per node (its records would be spread over the pods and lost with them)", name)
	}

	// Nothing node-local must outlive a pod: the data directory is an emptyDir.
	if m, ok := mountFor(cfg.DataDir); !ok || m.Path != path.Clean(cfg.DataDir) || m.Vol.EmptyDir == nil {
		t.Errorf("%s: data_dir %s is not an emptyDir mount of the Deployment: it holds uploads in progress only, and a persistent volume per pod would suggest otherwise (and pin pods to machines)", name, cfg.DataDir)
	}

	// The SFTP host keys: one Secret, read-only, the files the listener loads.
	hk, ok := mountFor(cfg.SFTP.HostKeyDir)
	switch {
	case !ok || hk.Path != path.Clean(cfg.SFTP.HostKeyDir) || hk.Vol.Secret == nil:
		t.Errorf("%s: sftp.host_key_dir %s is not a Secret volume mount of the Deployment: every node must present the same host keys (partners pin them); a node would generate its own", name, cfg.SFTP.HostKeyDir)
	default:
		s := hk.Vol.Secret
		if !hk.ReadOnly {
			t.Errorf("%v: the host key volume %s on %s is not mounted readOnly", do, hk.Vol.Name, hk.Path)
		}
		if s.Optional {
			t.Errorf("%v: the host key Secret %s is optional: without it a node would generate keys of its own; it must not start instead", do, s.SecretName)
		}
		if _, defined := get("Secret", s.SecretName); defined {
			t.Errorf("deploy/%s defines Secret %s: host keys are made per installation (ssh-keygen) and created as a Secret, never committed", k8sCluster, s.SecretName)
		}
		items := map[string]keyToPath{}
		for _, it := range s.Items {
			items[it.Path] = it
		}
		for _, f := range hostKeyFiles(t) {
			it, ok := items[f]
			if !ok && len(s.Items) > 0 {
				t.Errorf("%v: the host key volume %s has no item with path %s: the listener would try to generate it into the read-only folder and fail", do, hk.Vol.Name, f)
				continue
			}
			if ok && it.Key != f {
				t.Errorf("%v: the host key volume %s takes %s from Secret key %q; name the key %s, as `kubectl create secret generic --from-file=%s` does", do, hk.Vol.Name, f, it.Key, f, f)
			}
			mode := 0o644 // Kubernetes' default
			if s.DefaultMode != nil {
				mode = *s.DefaultMode
			}
			if it.Mode != nil {
				mode = *it.Mode
			}
			if mode&0o007 != 0 || mode&0o040 == 0 {
				t.Errorf("%v: host key %s gets mode %#o: want 0440 (readable by the pod's fsGroup, which the gateway runs in, and by no one else)", do, f, mode)
			}
		}
		if len(s.Items) == 0 {
			t.Errorf("%v: the host key volume %s lists no items: list %q, so that a Secret missing one fails the mount by name", do, hk.Vol.Name, hostKeyFiles(t))
		}
	}

	// The outbox: shared by every node, so ReadWriteMany.
	claims := map[string]bool{}
	for _, v := range spec.Volumes {
		if v.PersistentVolumeClaim == nil {
			continue
		}
		cn := v.PersistentVolumeClaim.ClaimName
		claims[cn] = true
		po, ok := get("PersistentVolumeClaim", cn)
		if !ok {
			t.Errorf("%v: volume %s claims PersistentVolumeClaim %q, which the build does not define", do, v.Name, cn)
			continue
		}
		var pvc struct {
			Spec struct {
				AccessModes []string `yaml:"accessModes"`
			} `yaml:"spec"`
		}
		decodeObject(t, po, &pvc)
		if !slices.Contains(pvc.Spec.AccessModes, "ReadWriteMany") {
			t.Errorf("%v: accessModes %q, want ReadWriteMany: all %d replicas mount it (volume %s), on different machines", po, pvc.Spec.AccessModes, replicas, v.Name)
		}
	}
	for _, po := range all("PersistentVolumeClaim") {
		if !claims[po.Name] {
			t.Errorf("%v: no volume of the Deployment claims it (the base's edigw-data must be deleted: the data directory is an emptyDir)", po)
		}
	}
	if m, ok := mountFor(cfg.Outbox.Dir); !ok || m.Vol.PersistentVolumeClaim == nil {
		t.Errorf("%s: outbox.dir %s is not on a PersistentVolumeClaim mount: partners download from outbox/ on whichever node their connection lands, so every node needs the same outbox (ReadWriteMany)", name, cfg.Outbox.Dir)
	}

	// Environment: every *_env of gateway.yaml and of the partner profiles,
	// secrets by secretKeyRef to keys the (example) Secret has.
	envSet := map[string]bool{}
	for _, e := range c.Env {
		envSet[e.Name] = true
		if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
			if e.Name == cfg.Spool.DSNEnv {
				t.Errorf("%v: env %s (spool.dsn_env) is not a secretKeyRef: the connection string carries the database password", do, e.Name)
			}
			continue
		}
		r := e.ValueFrom.SecretKeyRef
		if e.Name == cfg.Spool.DSNEnv && r.Optional {
			t.Errorf("%v: env %s (spool.dsn_env) is optional: a node without it cannot start", do, e.Name)
		}
		so, ok := get("Secret", r.Name)
		if !ok {
			t.Errorf("%v: env %s: secretKeyRef names Secret %q, which the build does not define", do, e.Name, r.Name)
			continue
		}
		var sec secret
		decodeObject(t, so, &sec)
		_, inData := sec.Data[r.Key]
		if _, inString := sec.StringData[r.Key]; !inData && !inString {
			t.Errorf("%v: env %s: key %q is not in %v", do, e.Name, r.Key, so)
		}
	}
	for _, env := range envRefs(cfg) {
		if !envSet[env] {
			t.Errorf("%s references $%s, but the Deployment's container does not set it", name, env)
		}
	}
	envRef := regexp.MustCompile(`(?m)^\s*[a-z_]+_env:\s*"?([A-Za-z_][A-Za-z0-9_]*)`)
	for _, f := range examplePartnerFiles(t) {
		if path.Base(f.Path) != partners.ProfileFile {
			continue
		}
		for _, m := range envRef.FindAllStringSubmatch(f.Content, -1) {
			if !envSet[m[1]] {
				t.Errorf("%s/%s references $%s, but the Deployment's container does not set it", examplesDir, f.Path, m[1])
			}
		}
	}

	// Services: SFTP lands on any pod; console sessions stay on theirs.
	ports := map[string]int{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
		ports[strconv.Itoa(p.ContainerPort)] = p.ContainerPort
	}
	var sftpSvc, httpSvc bool
	for _, so := range all("Service") {
		var s service
		decodeObject(t, so, &s)
		if !selects(s.Spec.Selector, podLabels) {
			t.Errorf("%v: selector %v does not select the Deployment's pods (labels %v)", so, s.Spec.Selector, podLabels)
		}
		affinity := "(unset)"
		if s.Spec.SessionAffinity != nil {
			affinity = *s.Spec.SessionAffinity
		}
		for _, p := range s.Spec.Ports {
			target, ok := ports[fmt.Sprint(p.TargetPort)]
			if p.TargetPort == nil {
				target, ok = ports[strconv.Itoa(p.Port)]
			}
			switch {
			case !ok:
				t.Errorf("%v: port %s targets %v, which the container does not declare", so, p.Name, p.TargetPort)
			case target == sftpPort:
				sftpSvc = true
				if affinity != "None" {
					t.Errorf("%v: sessionAffinity is %s, want None, stated: every node serves every partner, and a connection may land on any pod", so, affinity)
				}
				if s.Spec.Type == "LoadBalancer" && s.Spec.ExternalTrafficPolicy != "Local" {
					t.Errorf("%v: externalTrafficPolicy is %q, want Local: the SFTP listener needs client addresses for allowed_networks and bans", so, s.Spec.ExternalTrafficPolicy)
				}
			case target == httpPort:
				httpSvc = true
				if affinity != "ClientIP" {
					t.Errorf("%v: sessionAffinity is %s, want ClientIP: a console login is a session in the memory of the node that made it", so, affinity)
				}
			}
		}
	}
	if !sftpSvc {
		t.Errorf("deploy/%s builds no Service for SFTP (%d)", k8sCluster, sftpPort)
	}
	if !httpSvc {
		t.Errorf("deploy/%s builds no Service for HTTP (%d)", k8sCluster, httpPort)
	}
}

// ---------------------------------------------------------------------------
// systemd

// unitFile is a parsed systemd unit: section -> key -> values in order.
type unitFile map[string]map[string][]string

func parseUnit(src string) (unitFile, error) {
	u := unitFile{}
	section := ""
	var cont string
	for i, line := range strings.Split(src, "\n") {
		n := i + 1
		line = strings.TrimSpace(line)
		if cont != "" {
			line = cont + " " + line
			cont = ""
		}
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";") {
			continue
		}
		if strings.HasSuffix(line, `\`) {
			cont = strings.TrimSuffix(line, `\`)
			continue
		}
		if strings.HasPrefix(line, "[") {
			if !strings.HasSuffix(line, "]") {
				return nil, fmt.Errorf("edigw.service:%d: bad section header %q", n, line)
			}
			section = line[1 : len(line)-1]
			if _, dup := u[section]; dup {
				return nil, fmt.Errorf("edigw.service:%d: section [%s] appears twice", n, section)
			}
			u[section] = map[string][]string{}
			continue
		}
		if section == "" {
			return nil, fmt.Errorf("edigw.service:%d: %q before any [section]", n, line)
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("edigw.service:%d: %q is not Key=Value", n, line)
		}
		k = strings.TrimSpace(k)
		u[section][k] = append(u[section][k], strings.TrimSpace(v))
	}
	return u, nil
}

func (u unitFile) get(section, key string) string {
	vs := u[section][key]
	if len(vs) == 0 {
		return ""
	}
	return vs[len(vs)-1]
}

func TestSystemdUnit(t *testing.T) {
	data, err := os.ReadFile("systemd/edigw.service")
	if err != nil {
		t.Fatal(err)
	}
	u, err := parseUnit(string(data))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"Unit", "Service", "Install"} {
		if _, ok := u[s]; !ok {
			t.Errorf("edigw.service: no [%s] section", s)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	exec := strings.Fields(u.get("Service", "ExecStart"))
	if len(exec) == 0 || !path.IsAbs(strings.TrimLeft(exec[0], "-@:+!")) {
		t.Fatalf("edigw.service: ExecStart=%q: want an absolute path to edigw", u.get("Service", "ExecStart"))
	}
	if exec[0] != binaryPath || len(exec) < 2 || exec[1] != "serve" {
		t.Errorf("edigw.service: ExecStart=%q, want %s serve --config ...", u.get("Service", "ExecStart"), binaryPath)
	}
	cfgPath := ""
	for i, a := range exec {
		if a == "--config" && i+1 < len(exec) {
			cfgPath = exec[i+1]
		} else if v, ok := strings.CutPrefix(a, "--config="); ok {
			cfgPath = v
		}
	}
	if cfgPath != imageConfig {
		t.Errorf("edigw.service: ExecStart passes --config %q, want %s", cfgPath, imageConfig)
	}
	reload := u.get("Service", "ExecReload")
	if !strings.Contains(reload, "kill") || !strings.Contains(reload, "-HUP") || !strings.Contains(reload, "$MAINPID") {
		t.Errorf("edigw.service: ExecReload=%q, want /bin/kill -HUP $MAINPID (SIGHUP reloads the partner profiles)", reload)
	}
	want := map[string]string{
		"User":             "edigw",
		"StateDirectory":   "edigw",
		"WorkingDirectory": dataDir,
		"Restart":          "on-failure",
		"KillSignal":       "SIGTERM",
		"EnvironmentFile":  "-/etc/edigw/edigw.env",
		"NoNewPrivileges":  "yes",
		"ProtectSystem":    "strict",
		"ProtectHome":      "yes",
		"PrivateTmp":       "yes",
	}
	for _, k := range keys(want) {
		if got := u.get("Service", k); got != want[k] {
			t.Errorf("edigw.service: %s=%q, want %q", k, got, want[k])
		}
	}
	if stop, err := strconv.Atoi(strings.TrimSuffix(u.get("Service", "TimeoutStopSec"), "s")); err != nil || time.Duration(stop)*time.Second < minStopGrace {
		t.Errorf("edigw.service: TimeoutStopSec=%q, want at least %v so running stages can finish", u.get("Service", "TimeoutStopSec"), minStopGrace)
	}
	if !slices.ContainsFunc(u["Service"]["ReadWritePaths"], func(v string) bool { return slices.Contains(strings.Fields(v), dataDir) }) {
		t.Errorf("edigw.service: ReadWritePaths does not include %s", dataDir)
	}
	if got := u.get("Install", "WantedBy"); got != "multi-user.target" {
		t.Errorf("edigw.service: [Install] WantedBy=%q, want multi-user.target", got)
	}

	// The configuration it runs: deploy/systemd/gateway.yaml.
	cfg := loadConfig(t, "systemd/gateway.yaml")
	if cfg.DataDir != u.get("Service", "WorkingDirectory") || cfg.DataDir != "/var/lib/"+u.get("Service", "StateDirectory") {
		t.Errorf("deploy/systemd/gateway.yaml: data_dir %s, but the unit's StateDirectory is /var/lib/%s and WorkingDirectory %s",
			cfg.DataDir, u.get("Service", "StateDirectory"), u.get("Service", "WorkingDirectory"))
	}
	_, port, _ := net.SplitHostPort(cfg.SFTP.Listen)
	if p, _ := strconv.Atoi(port); p < 1024 && !strings.Contains(u.get("Service", "AmbientCapabilities"), "CAP_NET_BIND_SERVICE") {
		t.Errorf("edigw.service: sftp.listen %s is below 1024 and AmbientCapabilities lacks CAP_NET_BIND_SERVICE", cfg.SFTP.Listen)
	} else if p >= 1024 && u.get("Service", "AmbientCapabilities") != "" {
		t.Errorf("edigw.service: AmbientCapabilities=%s is not needed for sftp.listen %s", u.get("Service", "AmbientCapabilities"), cfg.SFTP.Listen)
	}
	env, err := os.ReadFile("systemd/edigw.env.example")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range envRefs(cfg) {
		if !regexp.MustCompile(`(?m)^#?\s*` + regexp.QuoteMeta(name) + `=`).Match(env) {
			t.Errorf("deploy/systemd/gateway.yaml references $%s, but deploy/systemd/edigw.env.example does not show it", name)
		}
	}
}

// ---------------------------------------------------------------------------
// README

// TestReadme checks that deploy/README.md mentions every deployment file.
func TestReadme(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	err = filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p == "examples" {
				return filepath.SkipDir
			}
			return nil
		}
		p = filepath.ToSlash(p)
		if p == "README.md" || p == "doc.go" {
			return nil
		}
		if !bytes.Contains(readme, []byte(p)) {
			t.Errorf("deploy/README.md does not mention %s", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
