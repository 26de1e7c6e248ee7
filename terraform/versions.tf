terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
      # aws.replica is the second region the bucket is replicated to. The caller passes
      # it even with replication off (then nothing is created with it): a provider
      # alias cannot be optional in a module.
      configuration_aliases = [aws.replica]
    }
  }
}
