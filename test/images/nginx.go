package images

import (
	"fmt"
	"os"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// nginxWelcome is the stock "Welcome to nginx!" page, shipped by Debian's nginx-common.
const nginxWelcome = "/usr/share/nginx/html/index.html"

// nginxData are the files of nginx-common that configurations include besides mime.types;
// each is copied when present.
var nginxData = []string{
	"/etc/nginx/fastcgi.conf",
	"/etc/nginx/fastcgi_params",
	"/etc/nginx/scgi_params",
	"/etc/nginx/uwsgi_params",
	"/etc/nginx/koi-utf",
	"/etc/nginx/koi-win",
	"/etc/nginx/win-utf",
}

// NginxConf is the image's /etc/nginx/nginx.conf, shaped like the official image's.
const NginxConf = `user  nginx;
worker_processes  auto;

error_log  /var/log/nginx/error.log notice;
pid        /run/nginx.pid;

events {
    worker_connections  1024;
}

http {
    include       /etc/nginx/mime.types;
    default_type  application/octet-stream;

    log_format  main  '$remote_addr - $remote_user [$time_local] "$request" '
                      '$status $body_bytes_sent "$http_referer" '
                      '"$http_user_agent" "$http_x_forwarded_for"';

    access_log  /var/log/nginx/access.log  main;

    sendfile        on;
    keepalive_timeout  65;

    include /etc/nginx/conf.d/*.conf;
}
`

// NginxDefaultConf is the image's /etc/nginx/conf.d/default.conf: port 80, the welcome page
// at /. (The official image's entrypoint adds "listen [::]:80" only where IPv6 is enabled;
// this image has no entrypoint, so it listens on IPv4 only.)
const NginxDefaultConf = `server {
    listen       80;
    server_name  localhost;

    location / {
        root   /usr/share/nginx/html;
        index  index.html index.htm;
    }

    error_page   500 502 503 504  /50x.html;
    location = /50x.html {
        root   /usr/share/nginx/html;
    }
}
`

const nginx50x = `<!DOCTYPE html>
<html>
<head>
<title>Error</title>
</head>
<body>
<h1>An error occurred.</h1>
<p>Sorry, the page you are looking for is currently unavailable.<br/>
Please try again later.</p>
</body>
</html>
`

var nginxImage = sync.OnceValues(buildNginx)

func buildNginx() (v1.Image, error) {
	if err := check("nginx", nginxReqs); err != nil {
		return nil, err
	}
	fs := newRootfs()
	if err := addBusybox(fs); err != nil {
		return nil, fmt.Errorf("images: nginx: %w", err)
	}
	if err := addNginx(fs); err != nil {
		return nil, fmt.Errorf("images: nginx: %w", err)
	}
	return image(fs, v1.Config{
		Env:          []string{"PATH=" + defaultPath},
		Cmd:          []string{"nginx", "-g", "daemon off;"},
		ExposedPorts: map[string]struct{}{"80/tcp": {}},
		StopSignal:   "SIGQUIT",
	})
}

func addNginx(fs *rootfs) error {
	if err := fs.binary("/usr/sbin/nginx", "/usr/sbin/nginx"); err != nil {
		return err
	}
	if err := fs.hostFile("/etc/nginx/mime.types", "/etc/nginx/mime.types"); err != nil {
		return err
	}
	for _, f := range nginxData {
		if _, err := os.Stat(f); err == nil {
			if err := fs.hostFile(f, f); err != nil {
				return err
			}
		}
	}
	if err := fs.hostFile(nginxWelcome, nginxWelcome); err != nil {
		return err
	}
	fs.file("/usr/share/nginx/html/50x.html", 0o644, nginx50x)
	fs.file("/etc/nginx/nginx.conf", 0o644, NginxConf)
	fs.file("/etc/nginx/conf.d/default.conf", 0o644, NginxDefaultConf)
	// The workers run as nginx (101:101), as in the official image.
	fs.file("/etc/passwd", 0o644, passwd+"nginx:x:101:101:nginx:/nonexistent:/bin/false\n")
	fs.file("/etc/group", 0o644, group+"nginx:x:101:nginx\n")
	// Debian's nginx is built with its temporary files in /var/lib/nginx, its pid file in
	// /run and its lock file in /var/lock; nginx creates the subdirectories itself.
	fs.dir("/var/lib/nginx", 0o755)
	fs.dir("/var/cache/nginx", 0o755)
	fs.dir("/run", 0o755)
	fs.dir("/run/lock", 0o1777)
	fs.symlink("/var/run", "/run")
	fs.symlink("/var/lock", "/run/lock")
	fs.dir("/usr/lib/nginx/modules", 0o755)
	// Logs go to the container's stdout and stderr, as in the official image.
	fs.symlink("/var/log/nginx/access.log", "/dev/stdout")
	fs.symlink("/var/log/nginx/error.log", "/dev/stderr")
	return nil
}

// Nginx is Debian's nginx (1.22) standing in for nginx:alpine: the welcome page at / on port
// 80, logs to stdout and stderr, Cmd ["nginx", "-g", "daemon off;"], StopSignal SIGQUIT,
// workers as user nginx. Like the Alpine image it also carries busybox (sh, cat, hostname,
// tar, wget, ...), so `kubectl exec` and `kubectl cp` work. Built once per process and
// shared; the image is immutable.
func Nginx() (v1.Image, error) { return nginxImage() }
