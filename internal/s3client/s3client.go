// Package s3client builds the S3 clients of the archive and the spool's
// blob store the same way: any S3-compatible endpoint, path-style when
// asked, static credentials named by environment variables (or the SDK's
// default chain), and checksums only where an operation requires them.
package s3client

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Config locates the server and names the credentials.
type Config struct {
	Region       string // default us-east-1 (S3-compatible servers mostly ignore it; SigV4 signs with it)
	Endpoint     string // an S3-compatible server's base URL; "" = AWS
	PathStyle    bool
	AccessKeyEnv string // both empty: the SDK's default credential chain
	SecretKeyEnv string
}

// New returns a client for c; opts adjust the client further (tests).
func New(ctx context.Context, c Config, opts ...func(*s3.Options)) (*s3.Client, error) {
	if c.Region == "" {
		c.Region = "us-east-1"
	}
	load := []func(*config.LoadOptions) error{
		config.WithRegion(c.Region),
		// S3-compatible servers often reject the CRC32/CRC64 trailers the
		// SDK sends by default since 2025; callers set the checksums they
		// want explicitly.
		config.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired),
		config.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired),
	}
	if c.AccessKeyEnv != "" || c.SecretKeyEnv != "" {
		if c.AccessKeyEnv == "" || c.SecretKeyEnv == "" {
			return nil, errors.New("set both access_key_env and secret_key_env, or neither")
		}
		ak, sk := os.Getenv(c.AccessKeyEnv), os.Getenv(c.SecretKeyEnv)
		if ak == "" || sk == "" {
			return nil, fmt.Errorf("environment variables %s and %s must both be set", c.AccessKeyEnv, c.SecretKeyEnv)
		}
		load = append(load, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(ak, sk, "")))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, load...)
	if err != nil {
		return nil, fmt.Errorf("load aws config: %w", err)
	}
	return s3.NewFromConfig(awsCfg, append([]func(*s3.Options){func(o *s3.Options) {
		o.UsePathStyle = c.PathStyle
		if c.Endpoint != "" {
			o.BaseEndpoint = aws.String(c.Endpoint)
		}
	}}, opts...)...), nil
}
