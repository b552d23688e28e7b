// fabqual's launcher for VMware's vCenter simulator (govmomi's simulator package).
//
// Debian ships govmomi's simulator library (golang-github-vmware-govmomi-dev) but
// not upstream's vcsim command, so fabqual builds this small program of its own
// against the packaged sources. Flag names follow upstream vcsim where they overlap.
//
// The password comes from the environment variable -password-env names, never from
// the command line. It prints one line "URL=<sdk url, password redacted> PID=<pid>
// CERT=<pem path>" once the SDK is listening, and exits on SIGINT/SIGTERM or when
// stdin closes (so a crashed parent never leaves a simulator behind).
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/vmware/govmomi/simulator"
)

// selfSigned makes a fresh certificate for 127.0.0.1 and writes its PEM to path,
// so clients can verify TLS against it instead of switching verification off.
func selfSigned(path string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "fabqual-vcsim"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, &tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.WriteFile(path, certPEM, 0o644); err != nil {
		return tls.Certificate{}, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
}

func main() {
	m := simulator.VPX()
	flag.IntVar(&m.Datacenter, "dc", 1, "datacenters")
	flag.IntVar(&m.Cluster, "cluster", 1, "clusters per datacenter")
	flag.IntVar(&m.ClusterHost, "host", 2, "hosts per cluster")
	flag.IntVar(&m.Host, "standalone-host", 0, "standalone hosts per datacenter")
	flag.IntVar(&m.Machine, "vm", 2, "VMs per resource pool")
	flag.IntVar(&m.Portgroup, "pg", 0, "DV port groups (and one DVS) per datacenter")
	listen := flag.String("l", "127.0.0.1:0", "listen address")
	user := flag.String("username", "", "the only accepted user (empty: any)")
	passEnv := flag.String("password-env", "", "environment variable holding the only accepted password (never on the command line, which every user can read in /proc)")
	apiVersion := flag.String("api-version", "7.0.3.0", "about.apiVersion (pyvmomi needs an exact known string)")
	idle := flag.Duration("idle", 0, "session idle timeout (0: never)")
	certOut := flag.String("cert-out", "", "write a fresh self-signed certificate's PEM here (empty: simulator's default cert)")
	stdinExit := flag.Bool("stdinexit", true, "exit when stdin closes")
	flag.Parse()

	m.ServiceContent.About.ApiVersion = *apiVersion
	simulator.SessionIdleTimeout = *idle
	if err := m.Create(); err != nil {
		log.Fatalf("vcsim: create model: %v", err)
	}
	u := &url.URL{Host: *listen}
	if *user != "" {
		u.User = url.UserPassword(*user, os.Getenv(*passEnv))
	}
	if *passEnv != "" {
		os.Unsetenv(*passEnv)
	}
	m.Service.Listen = u
	m.Service.TLS = new(tls.Config)
	if *certOut != "" {
		cert, err := selfSigned(*certOut)
		if err != nil {
			log.Fatalf("vcsim: certificate: %v", err)
		}
		m.Service.TLS.Certificates = []tls.Certificate{cert}
	}
	s := m.Service.NewServer()
	certFile := *certOut
	if certFile == "" {
		var err error
		if certFile, err = s.CertificateFile(); err != nil {
			log.Fatalf("vcsim: certificate file: %v", err)
		}
	}
	fmt.Printf("URL=%s PID=%d CERT=%s\n", s.URL.Redacted(), os.Getpid(), certFile)

	done := make(chan os.Signal, 1)
	signal.Notify(done, syscall.SIGINT, syscall.SIGTERM)
	if *stdinExit {
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			done <- syscall.SIGTERM
		}()
	}
	<-done
	s.Close()
	m.Remove()
}
